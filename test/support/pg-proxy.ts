import net from 'node:net';

/**
 * A TCP proxy in front of Postgres or Redis, to simulate an outage two ways: {@link cut} destroys every
 * connection and resets new ones (clients see ECONNRESET, as when the server goes down); {@link blackhole}
 * keeps connections open and accepts new ones, but nothing is forwarded either way (a server that stops
 * answering: clients wait). {@link restore} lets traffic through again (a blackholed connection stays dead:
 * only new connections pass, as after a real network partition heals with lost state).
 */
export class PgProxy {
  private readonly sockets = new Set<net.Socket>();
  private down = false;
  private holed = false;
  /** Connections accepted while blackholed (never forwarded), closed on restore/close. */
  private readonly held = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  /** Listens on a random local port, forwarding to `target` (default: the local Postgres). */
  static async start(target: { host: string; port: number } = { host: '127.0.0.1', port: 5432 }): Promise<PgProxy> {
    let proxy: PgProxy | undefined;
    const server = net.createServer((client) => proxy?.accept(client, target));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    proxy = new PgProxy(server, (server.address() as net.AddressInfo).port);
    return proxy;
  }

  /** `databaseUrl` with its host and port replaced by the proxy's. */
  url(databaseUrl: string): string {
    const u = new URL(databaseUrl);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  /** Postgres "goes down": open connections are destroyed, new ones reset. */
  cut(): void {
    this.down = true;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  /** The server "stops answering": bytes are swallowed both ways; connections stay open, new ones hang. */
  blackhole(): void {
    this.holed = true;
    for (const socket of this.sockets) {
      socket.unpipe();
      socket.pause();
    }
  }

  restore(): void {
    this.down = false;
    if (this.holed) {
      this.holed = false;
      // the swallowed connections cannot resume mid-protocol: end them so clients reconnect
      for (const socket of [...this.sockets, ...this.held]) socket.destroy();
      this.sockets.clear();
      this.held.clear();
    }
  }

  async close(): Promise<void> {
    this.cut();
    for (const socket of this.held) socket.destroy();
    this.held.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket, target: { host: string; port: number }): void {
    if (this.down) {
      client.resetAndDestroy();
      return;
    }
    if (this.holed) {
      this.held.add(client);
      client.on('error', () => undefined);
      client.on('close', () => this.held.delete(client));
      client.pause();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      this.sockets.add(a);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        this.sockets.delete(a);
        b.destroy();
      });
      a.pipe(b);
    }
  }
}
