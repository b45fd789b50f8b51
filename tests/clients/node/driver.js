'use strict';
// The shared loop of the Node.js client scripts (tests/connect/tunnel/test_node_clients.py):
// connect a cluster client to REDIS_HOST:REDIS_PORT, then run one JSON op per stdin line and
// print one JSON line per op, in order. Ops (every command is [NAME, key, ...args]):
//   {"op": "cmds", "cmds": [...]}      all at once (the client pipelines them per node)
//   {"op": "pipeline", "cmds": [...]}  one explicit pipeline (keys of one slot)
//   {"op": "multi", "cmds": [...]}     MULTI ... EXEC (keys of one slot)
//   {"op": "nodes"}                    the addresses the client uses: [{host, port, role}]
// CLIENT_RESP: 2 or 3; CLIENT_NAME: CLIENT SETNAME on every connection (optional).
// At the end of stdin: {"op": "end", "errors": [...every error event...]}, exit 0.
// Exit 2: could not connect, or an uncaught error ({"op": "fatal"});
// exit 3: CLIENT_TIMEOUT_MS (default 20 s) passed ({"op": "timeout"}).
const readline = require('node:readline');

function out(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

// A reply as JSON: errors as {error}, Buffers as text, Maps as objects.
function plain(value) {
  if (value instanceof Error) return { error: value.message };
  if (Buffer.isBuffer(value)) return value.toString();
  if (Array.isArray(value)) return value.map(plain);
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), plain(v)]));
  return value === undefined ? null : value;
}

async function settle(promise) {
  try {
    return plain(await promise);
  } catch (err) {
    return plain(err);
  }
}

async function main(adapter) {
  const fatal = (err) => {
    out({ op: 'fatal', error: String(err && err.message) });
    process.exit(2);
  };
  process.on('uncaughtException', fatal).on('unhandledRejection', fatal);
  const limit = Number(process.env.CLIENT_TIMEOUT_MS || 20000);
  setTimeout(() => {
    out({ op: 'timeout', ms: limit });
    process.exit(3);
  }, limit);
  const errors = [];
  const note = (what) => (err, where) => {
    errors.push(`${what}${where ? ` ${JSON.stringify(where)}` : ''}: ${err && err.message}`);
  };
  let client;
  try {
    client = await adapter.connect(
      process.env.REDIS_HOST || '127.0.0.1',
      Number(process.env.REDIS_PORT),
      { resp: Number(process.env.CLIENT_RESP || 2), name: process.env.CLIENT_NAME || undefined },
      note,
    );
  } catch (err) {
    out({ op: 'fatal', error: String(err && err.message), errors });
    process.exit(2);
  }
  const ops = {
    cmds: async (op) => ({ replies: await Promise.all(op.cmds.map((c) => settle(adapter.command(client, c)))) }),
    pipeline: async (op) => ({ replies: await settle(adapter.pipeline(client, op.cmds)) }),
    multi: async (op) => ({ replies: await settle(adapter.multi(client, op.cmds)) }),
    nodes: async () => ({ nodes: adapter.nodes(client) }),
  };
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const op = JSON.parse(line);
    out({ op: op.op, ...(await ops[op.op](op)) });
  }
  const seen = [...errors]; // before close: a client may report its own hang-up
  await settle(adapter.close(client));
  out({ op: 'end', errors: seen });
  process.exit(0);
}

module.exports = { main };
