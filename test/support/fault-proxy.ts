import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`: give it to a client in place of the target's endpoint. */
  readonly endpoint: string;
  /**
   * `forward`: bytes pass both ways. `hang`: bytes from clients, on new and already open (keep-alive) connections,
   * are swallowed and nothing is answered, the connections stay open: a server that accepts and never answers.
   * Switching back to `forward` destroys the connections that swallowed bytes (their HTTP exchange is lost
   * mid-way, as after a network partition); new connections and untouched ones forward again. Without a target the
   * mode changes nothing.
   */
  mode: 'forward' | 'hang';
  /** Connections accepted since the start. */
  connections(): number;
  /** Settles the next time a client's bytes are swallowed: a request is now stuck here. */
  nextSwallowed(): Promise<void>;
  close(): Promise<void>;
}

interface Connection {
  readonly client: Socket;
  readonly upstream: Socket | undefined;
  /** Bytes were dropped on it, or its target went away while hanging: its HTTP stream is broken for good. */
  broken: boolean;
}

/** Writes `chunk` and pauses `from` until `to` has room again. */
function relay(from: Socket, to: Socket, chunk: Buffer) {
  if (!to.write(chunk)) {
    from.pause();
    to.once('drain', () => from.resume());
  }
}

/**
 * A TCP proxy on loopback in front of `target` (an `http://127.0.0.1:<port>` endpoint such as dynalite's) that a test
 * can switch to a black hole, for the faults an SDK's own middleware cannot fake: a connection that opens and then
 * never answers. Without a target it is always a black hole.
 */
export async function startFaultProxy(target?: string): Promise<FaultProxy> {
  const upstreamAddress = target === undefined ? undefined : new URL(target);
  let mode: FaultProxy['mode'] = 'forward';
  let accepted = 0;
  const open = new Set<Connection>();
  let swallowWaiters: (() => void)[] = [];
  const blackHole = () => upstreamAddress === undefined || mode === 'hang';

  const server: Server = createServer((client) => {
    accepted += 1;
    const upstream =
      upstreamAddress === undefined
        ? undefined
        : connect({ host: upstreamAddress.hostname, port: Number(upstreamAddress.port) });
    const connection: Connection = { client, upstream, broken: false };
    open.add(connection);
    const done = () => {
      open.delete(connection);
      client.destroy();
      upstream?.destroy();
    };
    client.on('data', (chunk: Buffer) => {
      if (blackHole() || connection.broken || upstream === undefined) {
        connection.broken = true;
        for (const notify of swallowWaiters) notify();
        swallowWaiters = [];
        return;
      }
      relay(client, upstream, chunk);
    });
    client.on('close', done);
    client.on('error', done);
    if (upstream === undefined) return;
    upstream.on('data', (chunk: Buffer) => {
      // An answer to a request sent before the switch is swallowed too: nothing reaches a client while hanging.
      if (blackHole() || connection.broken) {
        connection.broken = true;
        return;
      }
      relay(upstream, client, chunk);
    });
    // While hanging, the target closing its side (idle keep-alive) must not show through: the client stays connected.
    upstream.on('end', () => {
      if (blackHole() || connection.broken) connection.broken = true;
      else client.end();
    });
    upstream.on('error', () => {
      if (blackHole() || connection.broken) connection.broken = true;
      else done();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    get mode() {
      return mode;
    },
    set mode(next) {
      mode = next;
      if (next === 'hang' || upstreamAddress === undefined) return;
      for (const connection of open) {
        if (!connection.broken) continue;
        open.delete(connection);
        connection.client.destroy();
        connection.upstream?.destroy();
      }
    },
    connections: () => accepted,
    nextSwallowed: () => new Promise<void>((resolve) => swallowWaiters.push(resolve)),
    close: () =>
      new Promise((resolve) => {
        for (const connection of open) {
          connection.client.destroy();
          connection.upstream?.destroy();
        }
        open.clear();
        server.close(() => resolve());
      }),
  };
}
