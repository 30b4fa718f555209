// dispy's node_update_script.py, ported: what would install or update software on a node. It
// sleeps a random time (its first argument and second: the range in seconds) and prints the time.
// A .mjs program runs with the node's own Node.js; no execute bit or #! line is needed.
const [min = '2', max = '4'] = process.argv.slice(2);
const sec = Number(min) + Math.random() * (Number(max) - Number(min));
await new Promise((resolve) => setTimeout(resolve, sec * 1000));
console.log(new Date().toString());
process.exit(0);
