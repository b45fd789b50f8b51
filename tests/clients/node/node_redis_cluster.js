'use strict';
// node-redis's createCluster as an app uses it, with replicas in its map; CLIENT_RESP=3 for
// RESP3. MOVED makes it re-read the topology; ASK is followed to the node it names, which
// must be one of the topology's addresses. Ops: driver.js.
const { createCluster } = require('redis');
const { main } = require('./driver');

main({
  async connect(host, port, { resp, name }, note) {
    const cluster = createCluster({
      rootNodes: [{ socket: { host, port } }],
      useReplicas: true,
      RESP: resp,
      defaults: { name, socket: { connectTimeout: 5000, reconnectStrategy: false } },
    });
    cluster.on('error', note('error'));
    cluster.on('node-error', note('node error'));
    await cluster.connect();
    return cluster;
  },
  command: (cluster, args) => cluster.sendCommand(args[1], false, args),
  pipeline: (cluster, cmds) => transaction(cluster, cmds).execAsPipeline(),
  multi: (cluster, cmds) => transaction(cluster, cmds).exec(),
  nodes: (cluster) =>
    [
      ...cluster.masters.map((n) => ({ host: n.host, port: n.port, role: 'master' })),
      ...cluster.replicas.map((n) => ({ host: n.host, port: n.port, role: 'slave' })),
    ],
  close: (cluster) => cluster.close(),
});

function transaction(cluster, cmds) {
  const tx = cluster.multi();
  for (const args of cmds) tx.addCommand(args[1], false, args);
  return tx;
}
