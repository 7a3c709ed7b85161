// The part of ws v7's API the local DPS and its tests use (ws 7 ships no types; @types/ws is not installed).
declare module 'ws' {
  import type { EventEmitter } from 'node:events';
  import type { IncomingMessage } from 'node:http';
  import type { Duplex, DuplexOptions } from 'node:stream';
  import type { SecureContextOptions } from 'node:tls';

  interface ServerOptions {
    noServer?: boolean;
    maxPayload?: number;
    clientTracking?: boolean;
    handleProtocols?: (protocols: string[], request: IncomingMessage) => string | false;
  }
  interface ClientOptions extends SecureContextOptions {
    headers?: Record<string, string>;
  }

  class WebSocketServer extends EventEmitter {
    constructor(options: ServerOptions);
    handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer, callback: (ws: WebSocket) => void): void;
    close(callback?: () => void): void;
  }

  class WebSocket extends EventEmitter {
    constructor(address: string, protocols?: string | string[], options?: ClientOptions);
    readonly protocol: string;
    close(code?: number): void;
    terminate(): void;
    on(event: 'open', listener: () => void): this;
    on(event: 'error', listener: (err: Error) => void): this;
    on(event: 'close', listener: (code: number) => void): this;
    on(event: 'unexpected-response', listener: (req: unknown, res: IncomingMessage) => void): this;
    on(event: string, listener: (...args: any[]) => void): this;
    static Server: typeof WebSocketServer;
    static createWebSocketStream(ws: WebSocket, options?: DuplexOptions): Duplex;
  }

  export = WebSocket;
}
