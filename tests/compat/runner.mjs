// The xstate side of durable_state's differential conformance suite.
//
// Reads one JSON document from stdin:
//   {"cases": [{"id": str, "config": {...}, "steps": [...], "impl": {"stateIn": {name: "#id"}},
//               "actors": {src: {...child machine config}}, "persist_each": bool,
//               "timed": bool, "emit_persisted": bool}]}
// A step is {"send": {"type": ...}} or {"advance": ms}.
// Writes one JSON document to stdout:
//   {"xstate": "5.x.y", "results": [{"id": str, "trace": [record...], "error": str|null}]}
// The trace holds one record for the started actor, then one after every step:
//   {"value", "context", "status", "output", "error", "children", "legal", "doubledTimer",
//    "orphan", "deadLetter", "tiedTimers", "persisted"?, "restored"?}
// "children" holds the same four fields (and "children") for every child
// machine in the snapshot whose status is "active", by child id. "orphan" says
// whether a child was started so far under the id of a child still running:
// xstate leaves the old one running, unreachable (or lets it finish unseen),
// where durable_state stops it first (docs/compatibility.md). "deadLetter" says
// whether an event went by systemId to an actor that stopped, or never started,
// without finishing: xstate drops it (in an actor's initial step a child that
// step started and stopped is still registered), where durable_state, which
// unregisters a systemId as its actor stops, fails the send as for an unknown
// name (docs/compatibility.md).
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
  cancel,
  createActor,
  enqueueActions,
  log,
  not,
  or,
  raise,
  sendParent,
  sendTo,
  setup,
  SimulatedClock,
  spawnChild,
  stateIn,
  stopChild,
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
  // Actors that talk. Sent events carry the sender's `a` as `n`.
  sendTo: sendTo(
    (_, p) => p.to,
    ({ context }, p) => ({ type: p.type, n: context.a }),
  ),
  // By systemId. xstate's sendTo takes a string as a child id only, and
  // system.get() of a missing name sends to the sender itself: here it is the
  // same failure as an unknown child, as durable_state's actors report it.
  sendSys: sendTo(
    ({ system, self }, p) => {
      const ref = system.get(p.sys);
      (system.sysTargets ??= []).push(ref);
      if (!ref) {
        throw new Error(`Unable to send event to actor '${p.sys}' from machine '${self.logic.id}'.`);
      }
      return ref;
    },
    ({ context }, p) => ({ type: p.type, n: context.a }),
  ),
  sendUp: sendParent(({ context }, p) => ({ type: p.type, n: context.a })),
  sendLater: sendTo((_, p) => p.to, (_, p) => ({ type: p.type }), { delay: 40, id: 'later' }),
  sendUpLater: sendParent((_, p) => ({ type: p.type }), { delay: 60, id: 'upLater' }),
  raiseLater: raise((_, p) => ({ type: p.type }), { delay: 30, id: 'raiseLater' }),
  cancelId: cancel((_, p) => p.id),
  spawnA1: spawnChild('childA', { id: 'a1', input: ({ context }) => ({ n: context.a }) }),
  spawnA2: spawnChild('childA', { id: 'a2', input: ({ context }) => ({ n: context.b }) }),
  spawnB1: spawnChild('childB', { id: 'b1', input: ({ context }) => ({ n: context.c }) }),
  stopId: stopChild((_, p) => p.id),
  // A child's input (carried by its xstate.init event) into `a`.
  fromInput: assign(({ event }) => ({
    a: typeof event.input?.n === 'number' ? event.input.n : 0,
  })),
  logA: log(({ context }) => context.a),
  boom: assign(() => {
    throw new Error('boom');
  }),
  // Runs the `then` action references when the guard holds (or there is
  // none), else the `else` ones.
  enq: enqueueActions(({ enqueue, check }, p) => {
    const holds = p.guard === undefined || check(convertGuard(p.guard));
    for (const action of (holds ? p.then : p.else) ?? []) {
      enqueue(action);
    }
  }),
  // An enqueued assign, then a sendParent whose event sees its result.
  enqAssignUp: enqueueActions(({ enqueue }, p) => {
    enqueue.assign({ a: ({ context }) => context.a + 1 });
    enqueue.sendParent(({ context }) => ({ type: p.type, n: context.a }));
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
  // Child machines share the vocabulary; they start no children of their own.
  const actors = {};
  for (const [src, childConfig] of Object.entries(testCase.actors ?? {})) {
    const config = convertConfig(childConfig);
    config.options = { maxIterations: MAX_MICROSTEPS };
    actors[src] = setup({ actions, guards, delays }).createMachine(config);
  }
  const config = convertConfig(testCase.config);
  config.options = { maxIterations: MAX_MICROSTEPS };
  return setup({ actions, guards, delays, actors }).createMachine(config);
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
// Also marks it when two actors have delayed events pending for the same
// time ("tiedTimers"): xstate fires them in the order they were set, which
// durable_state keeps only in part (docs/compatibility.md).
function watchDoubledTimers(actor) {
  const system = actor.system;
  const scheduler = system.scheduler;
  const schedule = scheduler.schedule;
  const dueTimes = new Map();
  actor.doubledTimer = false;
  actor.tiedTimers = false;
  scheduler.schedule = (source, target, event, delay, id) => {
    if (id !== undefined && `${source.sessionId}.${id}` in system._snapshot._scheduledEvents) {
      actor.doubledTimer = true;
    }
    const before = new Set(Object.keys(system._snapshot._scheduledEvents));
    const result = schedule(source, target, event, delay, id);
    const due = (system._clock.now?.() ?? 0) + delay;
    for (const key of Object.keys(system._snapshot._scheduledEvents)) {
      if (!before.has(key)) {
        dueTimes.set(key, { due, source });
      }
    }
    for (const [key, entry] of dueTimes) {
      if (!(key in system._snapshot._scheduledEvents)) {
        dueTimes.delete(key);
      } else if (entry.due === due && entry.source !== source) {
        actor.tiedTimers = true;
      }
    }
    return result;
  };
}

// The running child machines of a snapshot, recursively. A machine that is
// not active has none: xstate stops them when it finishes, and leaves them
// running, out of reach, when its own step failed (durable_state stops them).
function childRecords(snapshot) {
  const out = {};
  if (snapshot.status !== 'active') {
    return out;
  }
  for (const [id, ref] of Object.entries(snapshot.children ?? {})) {
    // Running ones only: a machine that finished leaves its stopped children
    // listed (with the status they had), where durable_state drops them.
    const s = ref?.getSnapshot?.();
    if (!s || s.status !== 'active' || ref._processingStatus !== 1) {
      continue;
    }
    out[id] = {
      value: s.value,
      context: s.context,
      status: s.status,
      output: s.output === undefined ? null : s.output,
      children: childRecords(s),
    };
  }
  return out;
}

// Every actor of the system that ever started, and those that stopped, to
// find orphans.
function watchActors(actor, watch) {
  const system = actor.system;
  const register = system._register;
  const unregister = system._unregister;
  actor.allActors = new Set();
  system._register = (sessionId, ref) => {
    actor.allActors.add(ref);
    return register(sessionId, ref);
  };
  system._unregister = (ref) => {
    watch.gone.add(ref);
    return unregister(ref);
  };
  // The receivers of events sent by systemId (sendSys): checked when the step
  // is recorded (one may stop, or never start, after the send).
  // (An actor's initial step runs before this is reached: it starts the list.)
  system.sysTargets ??= [];
  watch.relayed = system.sysTargets;
}

// A new child under the id of one that still runs (see "orphan").
function watchSpawn(watch, ref) {
  const parent = ref._parent;
  if (!parent) {
    return;
  }
  let byId = watch.spawned.get(parent);
  if (!byId) {
    byId = new Map();
    watch.spawned.set(parent, byId);
  }
  const old = byId.get(ref.id);
  if (old && !watch.gone.has(old) && old._processingStatus !== 2) {
    watch.replaced = true;
  }
  byId.set(ref.id, ref);
}

// A running actor that no snapshot of the tree lists.
function hasOrphan(actor) {
  const listed = new Set([actor]);
  const walk = (ref) => {
    for (const child of Object.values(ref.getSnapshot().children ?? {})) {
      if (child && !listed.has(child)) {
        listed.add(child);
        walk(child);
      }
    }
  };
  walk(actor);
  for (const ref of actor.allActors) {
    if (!listed.has(ref) && ref._processingStatus === 1) {
      return true;
    }
  }
  return false;
}

function record(actor, persisted) {
  const s = actor.getSnapshot();
  actor.orphan ||= actor.watch.replaced || hasOrphan(actor);
  const rec = {
    value: s.value,
    context: s.context,
    status: s.status,
    output: s.output === undefined ? null : s.output,
    error: s.error === undefined ? null : String(s.error?.message ?? s.error),
    children: childRecords(s),
    // A snapshot whose step failed keeps the states it had (checked then).
    legal: actor.legal && (s.status === 'error' || isLegal(s)),
    doubledTimer: actor.doubledTimer,
    tiedTimers: actor.tiedTimers,
    orphan: actor.orphan,
    deadLetter: (actor.watch.deadLetter ||= actor.watch.relayed.some(
      (ref) => ref && ref._processingStatus !== 1 && ref.getSnapshot().status === 'active',
    )),
  };
  actor.watch.relayed.length = 0;
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
  // The log action writes here; stdout carries the answer only.
  const options = { logger: () => {} };
  if (clock) {
    options.clock = clock;
  }
  if (snapshot !== undefined) {
    options.snapshot = snapshot;
  }
  const watch = {
    legal: true,
    replaced: false,
    deadLetter: false,
    relayed: [],
    spawned: new Map(),
    gone: new WeakSet(),
  };
  // Microsteps are inspected too: a macrostep can pass through an illegal
  // configuration and end in a legal one.
  options.inspect = (ev) => {
    if (ev.type === '@xstate.microstep' && !isLegal(ev.snapshot)) {
      watch.legal = false;
    }
    if (ev.type === '@xstate.actor') {
      watchSpawn(watch, ev.actorRef);
    }
  };
  const actor = createActor(machine, options);
  Object.defineProperty(actor, 'legal', { get: () => watch.legal });
  actor.watch = watch;
  watchDoubledTimers(actor);
  watchActors(actor, watch);
  actor.orphan = false;
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
