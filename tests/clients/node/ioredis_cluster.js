'use strict';
// ioredis's Cluster client as an app uses it (defaults: no NAT map, no periodic slot refresh;
// MOVED and ASK followed to the address they name). Ops: driver.js.
const { Cluster } = require('ioredis');
const { main } = require('./driver');

main({
  async connect(host, port, { name }, note) {
    const cluster = new Cluster([{ host, port }], {
      clusterRetryStrategy: () => null, // fail fast: the test reads the error
      redisOptions: { connectTimeout: 5000, maxRetriesPerRequest: 2, connectionName: name },
    });
    cluster.on('error', note('error'));
    cluster.on('node error', note('node error'));
    await new Promise((resolve, reject) => {
      cluster.once('ready', resolve);
      cluster.once('end', () => reject(new Error('cluster ended before ready')));
    });
    return cluster;
  },
  command: (cluster, [name, ...args]) => cluster.call(name, ...args),
  async pipeline(cluster, cmds) {
    const pipe = cluster.pipeline();
    for (const [name, ...args] of cmds) pipe.call(name, ...args);
    return (await pipe.exec()).map(([err, value]) => err || value);
  },
  async multi(cluster, cmds) {
    const tx = cluster.multi();
    for (const [name, ...args] of cmds) tx.call(name, ...args);
    return (await tx.exec()).map(([err, value]) => err || value);
  },
  nodes: (cluster) =>
    ['master', 'slave'].flatMap((role) =>
      cluster.nodes(role).map((n) => ({ host: n.options.host, port: n.options.port, role })),
    ),
  close: (cluster) => cluster.quit(),
});
