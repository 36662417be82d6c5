// Connection sequences node-postgres users run into, played against one address.
// Usage: node sequences.js HOST PORT USER RUNS
// Prints one JSON object: for each sequence, how many runs ended in each outcome. An outcome is
// what the application saw: the callback errors, 'error' events and unhandled errors, by text.
'use strict';

const { Client } = require('pg');

const [host, port, user, runs] = process.argv.slice(2);
const config = { host, port: Number(port), user, database: 'postgres' };

// An error the application did not handle would end the process; record it instead.
let unhandled = [];
process.on('uncaughtException', (err) => unhandled.push('uncaught: ' + err.message));
process.on('unhandledRejection', (err) => unhandled.push('unhandled: ' + (err && err.message)));

const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

// connect() then end() at once: Terminate goes out before the StartupMessage.
async function connectThenEnd() {
  const seen = [];
  const client = new Client(config);
  client.on('error', (err) => seen.push('error event: ' + err.message));
  client.connect().catch((err) => seen.push('connect: ' + err.message));
  await client.end().catch((err) => seen.push('end: ' + err.message));
  await settle();
  return seen;
}

// end() inside the connect callback while a query is queued: Terminate, then the query.
function endInConnectCallback() {
  return new Promise((resolve) => {
    const seen = [];
    const client = new Client(config);
    client.on('error', (err) => seen.push('error event: ' + err.message));
    client.connect((err) => {
      if (err) seen.push('connect: ' + err.message);
      client.end((err2) => {
        if (err2) seen.push('end: ' + err2.message);
        settle().then(() => resolve(seen));
      });
    });
    client.query('SELECT 1', (err) => seen.push('query: ' + (err ? err.message : 'ok')));
  });
}

// A session whose backend is terminated while it is idle.
async function idleBackendTerminated() {
  const seen = [];
  const victim = new Client({ ...config, application_name: 'pgscope_node_victim' });
  victim.on('error', (err) => seen.push('error event: ' + err.message));
  victim.on('end', () => seen.push('end event'));
  await victim.connect();
  const admin = new Client({ ...config, user: 'postgres' });
  await admin.connect();
  await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity " +
                    "WHERE application_name = 'pgscope_node_victim'");
  await admin.end();
  await new Promise((resolve) => setTimeout(resolve, 300));
  await victim.query('SELECT 1').catch((err) => seen.push('query: ' + err.message));
  return seen;
}

async function main() {
  const sequences = { connectThenEnd, endInConnectCallback, idleBackendTerminated };
  const result = {};
  for (const [name, play] of Object.entries(sequences)) {
    const outcomes = {};
    const n = name === 'idleBackendTerminated' ? 3 : Number(runs);
    for (let i = 0; i < n; i++) {
      unhandled = [];
      const seen = (await play()).concat(unhandled);
      const key = seen.join(' | ') || 'nothing';
      outcomes[key] = (outcomes[key] || 0) + 1;
    }
    result[name] = outcomes;
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ failed: err.message }) + '\n');
  process.exit(1);
});
