// Starts dynalite on 127.0.0.1 with an ephemeral port and prints {"port": N}.
//
// Usage: node dynalite_server.js <directory holding node_modules/dynalite>
//
// dynalite's own command line cannot listen on port 0 (it reads 0 as "use the
// default, 4567"), hence this launcher. Tables are kept in memory and become
// ACTIVE at once. The server stops when its standard input closes (the test
// session ended, or died) or on SIGTERM/SIGINT.
'use strict'

const path = require('path')

const dynalite = require(path.join(process.argv[2], 'node_modules', 'dynalite'))
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 })

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n')
})

let stopping = false
function stop () {
  if (stopping) return
  stopping = true
  server.close(() => process.exit(0))
  server.closeAllConnections()
}

process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.on('error', stop)
process.stdin.resume()
