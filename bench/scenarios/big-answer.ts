import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { prepareLocalFixture, startLocalMode } from '../../test/support/local-mode.ts';
import {
  BENCH_CALLER,
  type BenchOptions,
  benchConnector,
  benchVend,
  median,
  ms,
  type Row,
  startBenchOidc,
  withCleanup,
} from '../support.ts';

const ANSWER_BYTES = 300 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 'a');
const MiB = 1024 * 1024;

/** A token server whose answer is a 300 MB chunked "token", sent as fast as the client reads, until it hangs up. */
async function startEndlessServer() {
  let requests = 0;
  let sent = 0;
  const server = createServer(async (incoming, outgoing) => {
    requests += 1;
    incoming.resume();
    outgoing.writeHead(200, { 'content-type': 'application/json' });
    outgoing.write('{"access_token":"');
    let written = 0;
    while (written < ANSWER_BYTES && !outgoing.destroyed) {
      written += CHUNK.byteLength;
      sent += CHUNK.byteLength;
      if (!outgoing.write(CHUNK)) await Promise.race([once(outgoing, 'drain'), once(outgoing, 'close')]);
    }
    outgoing.end('"}');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    tokenUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`,
    requests: () => requests,
    sent: () => sent,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Resident and peak resident memory of a process, in bytes (Linux /proc). */
async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rss: kib('VmRSS') * 1024, peak: kib('VmHWM') * 1024 };
}

/**
 * Scenario 11: local mode vends a connector whose token server answers with 300 MB (chunked, no length). Local
 * mode's resident memory when idle (after a served vend), then its peak while the big answer comes in (the peak
 * is reset before each vend through /proc/<pid>/clear_refs), the answer local mode gives, and how many bytes the
 * server got to send before local mode hung up.
 */
export async function bigAnswer(options: BenchOptions) {
  return withCleanup(async (defer) => {
    const oidc = await startBenchOidc(defer);
    const endless = await startEndlessServer();
    defer(() => endless.close());
    const fixture = await prepareLocalFixture(
      {
        'client-credentials/normal': benchConnector(oidc.tokenUrl),
        'client-credentials/huge': benchConnector(endless.tokenUrl),
      },
      { BENCH_CALLER },
    );
    defer(() => fixture.cleanup());
    const vendor = await startLocalMode(fixture.env);
    defer(() => vendor.stop());
    const pid = vendor.child.pid;
    if (pid === undefined) throw new Error('local mode has no pid');

    const normal = await benchVend(`${vendor.url}/tokens/client-credentials/normal`);
    if (normal.status !== 200) throw new Error(`the normal vend answered ${normal.status}`);
    const repetitions: { idleMiB: number; peakMiB: number; overIdleMiB: number; status: number; ms: number }[] = [];
    for (let repetition = 0; repetition < options.repetitions; repetition += 1) {
      await benchVend(`${vendor.url}/tokens/client-credentials/normal`);
      const idle = await memoryOf(pid);
      // "5" resets the peak (VmHWM) to the current resident size.
      await writeFile(`/proc/${pid}/clear_refs`, '5');
      const started = performance.now();
      const answer = await benchVend(`${vendor.url}/tokens/client-credentials/huge`);
      const elapsed = performance.now() - started;
      const after = await memoryOf(pid);
      repetitions.push({
        idleMiB: idle.rss / MiB,
        peakMiB: after.peak / MiB,
        overIdleMiB: (after.peak - idle.rss) / MiB,
        status: answer.status,
        ms: elapsed,
      });
    }
    const overIdle = median(repetitions.map((entry) => entry.overIdleMiB));
    const statuses = [...new Set(repetitions.map((entry) => entry.status))].join(', ');
    const scenario = '11 big answer';
    const rows: Row[] = [
      {
        scenario,
        metric: 'local mode resident memory: idle · peak while a 300 MB answer comes in (MiB)',
        value: `${median(repetitions.map((entry) => entry.idleMiB)).toFixed(0)} · ${median(repetitions.map((entry) => entry.peakMiB)).toFixed(0)}`,
      },
      {
        scenario,
        metric: 'peak over idle',
        value: `${overIdle.toFixed(1)} MiB`,
        target: '≤ 50 MiB',
        met: overIdle <= 50,
      },
      {
        scenario,
        metric: `answer to the vend · token requests per vend · MiB the server got to send of 300 · vend time`,
        value: `${statuses} · ${(endless.requests() / options.repetitions).toFixed(1)} · ${(endless.sent() / options.repetitions / MiB).toFixed(1)} · ${ms(median(repetitions.map((entry) => entry.ms)), 1)}`,
      },
    ];
    return {
      rows,
      data: { answerBytes: ANSWER_BYTES, repetitions, tokenRequests: endless.requests(), bytesSent: endless.sent() },
    };
  });
}
