// Peer of the IPC baseline in bench/baseline.ts: echoes every message back over the fork IPC
// channel (JSON serialization, as the node daemon talks to its job runners). Exits when the
// channel closes.
process.on('message', (msg) => process.send(msg));
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
