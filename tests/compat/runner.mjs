// The xstate side of durable_state's differential conformance suite.
//
// Reads one JSON document from stdin:
//   {"cases": [{"id": str, "config": {...}, "steps": [...], "impl": {"stateIn": {name: "#id"}},
//               "persist_each": bool, "timed": bool, "emit_persisted": bool}]}
// A step is {"send": {"type": ...}} or {"advance": ms}.
// Writes one JSON document to stdout:
//   {"xstate": "5.x.y", "results": [{"id": str, "trace": [record...], "error": str|null}]}
// The trace holds one record for the started actor, then one after every step:
//   {"value", "context", "status", "output", "error", "legal", "doubledTimer",
//    "persisted"?, "restored"?}
// "legal" says whether every configuration xstate went through so far (after
// every microstep, not only at rest) was one a statechart can be in. "doubledTimer" says whether a delayed event was
// scheduled so far while another with the same id was pending: xstate then
// fires both, where durable_state keeps one timer per id
// (docs/compatibility.md, row 10). With "emit_persisted", "persisted" is the
// persisted snapshot after the step, and "restored" (from the second record
// on) is what a fresh actor restored from the previous record's persisted
// snapshot reports after it is sent the same step.
//
// The named actions, guards and delays below are a fixed vocabulary; the Python
// side of the suite (tests/compat/compat_vocab.py) defines the same names with the same
// meaning. Keep the two in step.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import {
  and,
  assign,
  createActor,
  not,
  or,
  raise,
  setup,
  SimulatedClock,
  stateIn,
} from 'xstate';

// A safety net only: generated machines are built to settle in far fewer
// microsteps, so hitting this limit means the generator broke its own rules.
const MAX_MICROSTEPS = 5000;

const actions = {
  inc: assign(({ context }, p) => ({ [p.key]: context[p.key] + p.by })),
  set: assign((_, p) => ({ [p.key]: p.value })),
  // Appends the tag, or the event type when no tag is given.
  push: assign(({ context, event }, p) => ({
    log: [...context.log, p && p.tag !== undefined ? p.tag : event.type],
  })),
  // Appends the event's output (done events carry one), null when absent.
  pushOut: assign(({ context, event }) => ({
    log: [...context.log, event.output === undefined ? null : event.output],
  })),
  // Copies the event's numeric `n` into a context key (0 when absent).
  fromEvent: assign(({ context, event }, p) => ({
    [p.key]: typeof event.n === 'number' ? event.n : 0,
  })),
  raiseE: raise((_, p) => ({ type: p.type })),
  // The per-key form of assign: every function sees the context from before it.
  perKey: assign({
    a: ({ context }, p) => context.a + p.by,
    b: ({ context }) => context.a * 10,
    log: ({ context }) => [...context.log, 'pk'],
    c: 7,
  }),
};

const baseGuards = {
  ctxGt: ({ context }, p) => context[p.key] > p.n,
  ctxLt: ({ context }, p) => context[p.key] < p.n,
  ctxEven: ({ context }, p) => context[p.key] % 2 === 0,
  evFlag: ({ event }) => Boolean(event.flag),
};

const delays = {
  short: () => 40,
  byA: ({ context }) => 25 + 10 * (context.a % 4),
};

const COMBINATORS = { and, or };

// Config guards use plain JSON for combinators: {"type": "and"|"or"|"not", "guards": [...]}.
// xstate expects its and()/or()/not() guard objects there instead.
function convertGuard(guard) {
  if (guard && typeof guard === 'object' && !Array.isArray(guard)) {
    if (guard.type === 'not') {
      return not(convertGuard(guard.guards[0]));
    }
    if (guard.type in COMBINATORS && Array.isArray(guard.guards)) {
      return COMBINATORS[guard.type](guard.guards.map(convertGuard));
    }
  }
  return guard;
}

// Data, not structure: never rewritten.
const OPAQUE_KEYS = new Set(['context', 'output', 'meta', 'params']);

function convertConfig(node) {
  if (Array.isArray(node)) {
    return node.map(convertConfig);
  }
  if (!node || typeof node !== 'object') {
    return node;
  }
  const out = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === 'guard') {
      out[key] = convertGuard(value);
    } else if (OPAQUE_KEYS.has(key)) {
      out[key] = value;
    } else {
      out[key] = convertConfig(value);
    }
  }
  return out;
}

function buildMachine(testCase) {
  const guards = { ...baseGuards };
  for (const [name, id] of Object.entries(testCase.impl?.stateIn ?? {})) {
    guards[name] = stateIn(id);
  }
  const config = convertConfig(testCase.config);
  config.options = { maxIterations: MAX_MICROSTEPS };
  return setup({ actions, guards, delays }).createMachine(config);
}

// Every active node's parent is active, a compound state has exactly one
// active child and a parallel state all of its children.
function isLegal(snapshot) {
  const active = new Set(snapshot._nodes);
  if (!active.has(snapshot.machine.root)) {
    return false;
  }
  for (const node of active) {
    if (node.parent && !active.has(node.parent)) {
      return false;
    }
    const children = Object.values(node.states ?? {}).filter((c) => c.type !== 'history');
    const on = children.filter((c) => active.has(c)).length;
    if (node.type === 'compound' && on !== 1) {
      return false;
    }
    if (node.type === 'parallel' && on !== children.length) {
      return false;
    }
  }
  return true;
}

// Marks the actor when a delayed event is scheduled under an id that is
// already pending (the scheduler keeps both timeouts).
function watchDoubledTimers(actor) {
  const system = actor.system;
  const scheduler = system.scheduler;
  const schedule = scheduler.schedule;
  actor.doubledTimer = false;
  scheduler.schedule = (source, target, event, delay, id) => {
    if (id !== undefined && `${source.sessionId}.${id}` in system._snapshot._scheduledEvents) {
      actor.doubledTimer = true;
    }
    return schedule(source, target, event, delay, id);
  };
}

function record(actor, persisted) {
  const s = actor.getSnapshot();
  const rec = {
    value: s.value,
    context: s.context,
    status: s.status,
    output: s.output === undefined ? null : s.output,
    error: s.error === undefined ? null : String(s.error?.message ?? s.error),
    legal: actor.legal && isLegal(s),
    doubledTimer: actor.doubledTimer,
  };
  if (persisted !== undefined) {
    rec.persisted = persisted;
  }
  return rec;
}

// durable_state's ManualClock.advance(ms) has SimulatedClock.increment(ms)
// semantics: time jumps to the end first, due timers fire in due order (ties
// in scheduling order), and a timer started by a firing timer counts from the
// new time.
function advance(clock, ms) {
  clock.increment(ms);
}

function startActor(machine, clock, snapshot) {
  const options = {};
  if (clock) {
    options.clock = clock;
  }
  if (snapshot !== undefined) {
    options.snapshot = snapshot;
  }
  const watch = { legal: true };
  // Microsteps are inspected too: a macrostep can pass through an illegal
  // configuration and end in a legal one.
  options.inspect = (ev) => {
    if (ev.type === '@xstate.microstep' && !isLegal(ev.snapshot)) {
      watch.legal = false;
    }
  };
  const actor = createActor(machine, options);
  Object.defineProperty(actor, 'legal', { get: () => watch.legal });
  watchDoubledTimers(actor);
  // An error listener keeps an erroring actor from crashing the process; the
  // error shows in the snapshot (status "error").
  actor.subscribe({ error: () => {} });
  actor.start();
  return actor;
}

function persist(actor) {
  // A JSON round trip, exactly what a storage backend does to it.
  return JSON.parse(JSON.stringify(actor.getPersistedSnapshot()));
}

function runCase(testCase) {
  const machine = buildMachine(testCase);
  const clock = testCase.timed ? new SimulatedClock() : undefined;
  const wantPersisted = Boolean(testCase.persist_each || testCase.emit_persisted);
  let actor = startActor(machine, clock, undefined);
  const trace = [record(actor, wantPersisted ? persist(actor) : undefined)];
  for (const step of testCase.steps) {
    if ('advance' in step) {
      advance(clock, step.advance);
    } else {
      actor.send(step.send);
    }
    const persisted = wantPersisted ? persist(actor) : undefined;
    if (testCase.persist_each) {
      actor.stop();
      actor = startActor(machine, clock, persisted);
    }
    const rec = record(actor, persisted);
    if (testCase.emit_persisted && 'send' in step) {
      const restored = startActor(machine, undefined, trace[trace.length - 1].persisted);
      restored.send(step.send);
      rec.restored = record(restored, undefined);
      restored.stop();
    }
    trace.push(rec);
  }
  actor.stop();
  return trace;
}

function main() {
  const input = JSON.parse(readFileSync(0, 'utf8'));
  const require = createRequire(import.meta.url);
  const version = require('xstate/package.json').version;
  const results = [];
  for (const testCase of input.cases) {
    try {
      results.push({ id: testCase.id, trace: runCase(testCase), error: null });
    } catch (err) {
      results.push({ id: testCase.id, trace: null, error: String(err?.stack ?? err) });
    }
  }
  process.stdout.write(JSON.stringify({ xstate: version, results }));
}

main();
