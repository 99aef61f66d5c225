// xstate v5 reference figures for bench/bench_statechart.py.
//
// Runs the same two machines as the Python benchmark (the configs below are
// checked against the Python ones on every run: bench_statechart.py compares
// the "configs" member of this script's output with its own) and prints one
// JSON document on stdout.
//
//   node xstate_bench.mjs [--min-time SECONDS] [--repeats N] [--memory-actors N]
//
// Run with `node --expose-gc` to get the memory figure (bytes of V8 heap per
// started actor); without it the memory member is null.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import { assign, createActor, createMachine, initialTransition, transition } from "xstate";

const FLAT_CONFIG = {
  id: "flat",
  initial: "A",
  states: {
    A: { on: { NEXT: "B" } },
    B: { on: { NEXT: "C" } },
    C: { on: { NEXT: "A" } },
  },
};

function region(guard, action) {
  const step = (target) => ({ NEXT: { target, guard, actions: action } });
  return {
    initial: "A",
    states: { A: { on: step("B") }, B: { on: step("C") }, C: { on: step("A") } },
  };
}

const PARALLEL_CONFIG = {
  id: "par",
  initial: "P",
  context: { r1: 0, r2: 0 },
  states: {
    P: {
      type: "parallel",
      states: { r1: region("r1Ok", "incR1"), r2: region("r2Ok", "incR2") },
    },
  },
};

const IMPLEMENTATIONS = {
  guards: {
    r1Ok: ({ context }) => context.r1 >= 0,
    r2Ok: ({ context }) => context.r2 >= 0,
  },
  actions: {
    incR1: assign({ r1: ({ context }) => context.r1 + 1 }),
    incR2: assign({ r2: ({ context }) => context.r2 + 1 }),
  },
};

const CYCLE = ["A", "B", "C"];
const NEXT = { type: "NEXT" };

function parseArgs(argv) {
  const options = { minTime: 0.5, repeats: 5, memoryActors: 10000 };
  for (let i = 0; i < argv.length; i += 2) {
    const value = Number(argv[i + 1]);
    if (!Number.isFinite(value) || value <= 0) {
      throw new Error(`bad value for ${argv[i]}: ${argv[i + 1]}`);
    }
    if (argv[i] === "--min-time") options.minTime = value;
    else if (argv[i] === "--repeats") options.repeats = Math.floor(value);
    else if (argv[i] === "--memory-actors") options.memoryActors = Math.floor(value);
    else throw new Error(`unknown option ${argv[i]}`);
  }
  return options;
}

// Each check throws unless exactly n events did their work; a benchmark whose
// guards or assigns were skipped would otherwise look fast.
function checkFlat(snapshot, n) {
  const expected = CYCLE[n % 3];
  if (snapshot.value !== expected) {
    throw new Error(`flat: after ${n} events expected ${expected}, got ${JSON.stringify(snapshot.value)}`);
  }
}

function checkParallel(snapshot, n) {
  const expected = CYCLE[n % 3];
  const { r1, r2 } = snapshot.value.P;
  const { context } = snapshot;
  if (r1 !== expected || r2 !== expected || context.r1 !== n || context.r2 !== n) {
    throw new Error(
      `parallel: after ${n} events expected ${expected} and counters ${n}, got ` +
        `${JSON.stringify(snapshot.value)} ${JSON.stringify(context)}`,
    );
  }
}

// Returns the seconds taken by n events; setup and the check are not timed.
function actorSend(machine, check) {
  return (n) => {
    const actor = createActor(machine).start();
    const start = performance.now();
    for (let i = 0; i < n; i++) actor.send(NEXT);
    const elapsed = (performance.now() - start) / 1000;
    check(actor.getSnapshot(), n);
    actor.stop();
    return elapsed;
  };
}

function pureTransition(machine, check) {
  return (n) => {
    let [snapshot] = initialTransition(machine);
    const start = performance.now();
    for (let i = 0; i < n; i++) [snapshot] = transition(machine, snapshot, NEXT);
    const elapsed = (performance.now() - start) / 1000;
    check(snapshot, n);
    return elapsed;
  };
}

// Doubles n until one run lasts minTime (that run also warms the JIT up), then
// keeps the best of `repeats` runs of that size.
function measure(run, { minTime, repeats }) {
  let n = 1000;
  while (run(n) < minTime) n *= 2;
  const times = [];
  for (let i = 0; i < repeats; i++) times.push(run(n));
  const best = Math.min(...times);
  return { events: n, best_s: best, runs_s: times, events_per_s: n / best };
}

function memoryPerActor(machine, count) {
  if (typeof globalThis.gc !== "function") return null;
  globalThis.gc();
  const before = process.memoryUsage().heapUsed;
  const actors = new Array(count);
  for (let i = 0; i < count; i++) actors[i] = createActor(machine).start();
  globalThis.gc();
  const after = process.memoryUsage().heapUsed;
  for (const actor of actors) checkFlat(actor.getSnapshot(), 0);
  for (const actor of actors) actor.stop();
  return { actors: count, bytes_per_actor: (after - before) / count };
}

function main() {
  const options = parseArgs(process.argv.slice(2));
  const require = createRequire(import.meta.url);
  const xstateVersion = JSON.parse(readFileSync(require.resolve("xstate/package.json"), "utf8")).version;
  const flat = createMachine(FLAT_CONFIG);
  const parallel = createMachine(PARALLEL_CONFIG, IMPLEMENTATIONS);
  const results = [];
  for (const [name, machine, check] of [
    ["flat", flat, checkFlat],
    ["parallel", parallel, checkParallel],
  ]) {
    results.push({ machine: name, path: "createActor + actor.send", ...measure(actorSend(machine, check), options) });
    results.push({ machine: name, path: "transition()", ...measure(pureTransition(machine, check), options) });
  }
  const output = {
    xstate: xstateVersion,
    node: process.version,
    configs: { flat: FLAT_CONFIG, parallel: PARALLEL_CONFIG },
    results,
    memory: memoryPerActor(flat, options.memoryActors),
  };
  process.stdout.write(`${JSON.stringify(output)}\n`);
}

main();
