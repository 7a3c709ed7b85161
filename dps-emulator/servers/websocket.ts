/**
 * MQTT over WebSockets on TLS (`wss`), for the local DPS and the local hub alike. It only does the WebSocket
 * handshake: each accepted connection becomes a byte stream handed to the same aedes broker as plain MQTT on TLS
 * (servers/mqtt.ts, servers/hub-mqtt.ts), so CONNECT, SAS and topic rules are those of the MQTT port, unchanged.
 *
 * What the real services take, as their SDKs connect:
 * - path `/$iothub/websocket`: Node SDK `'wss://' + host + ':443/$iothub/websocket'` (azure-iot-device-mqtt and
 *   azure-iot-provisioning-device-mqtt `mqtt_ws.ts`); Python SDK `ws_set_options(path="/$iothub/websocket")`
 *   (azure-iot-device `common/mqtt_transport.py`, for DPS and hub alike).
 * - subprotocol `mqtt`: mqtt.js asks for `mqtt` at MQTT 3.1.1 (`lib/connect/ws.js`), paho sends
 *   `Sec-Websocket-Protocol: mqtt`.
 * - anything else is refused with HTTP 400: "The path of the URL of the request must be `/$iothub/websocket`. The
 *   request must contain the `sec-websocket-protocol` header with value `mqtt`. Not doing both of these things will
 *   cause the server to reject the connection with HTTP 400." (MicrosoftDocs/azure-docs#21306; a device sent to
 *   `wss://<hub>/` gets "Unexpected response code: 400", Azure/azure-iot-sdk-node#634).
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import type { TlsMaterial } from '../tls.js';

export const WEBSOCKET_PATH = '/$iothub/websocket';
export const WEBSOCKET_SUBPROTOCOL = 'mqtt';
/**
 * Largest WebSocket message taken. mqtt.js and paho send one MQTT packet per message; the hub's largest is a 256 KB
 * device-to-cloud message plus its topic, so 1 MiB leaves room and still bounds what one frame can make us buffer.
 */
const MAX_MESSAGE_BYTES = 1024 * 1024;

export interface MqttWebSocketServer {
  readonly server: Server;
  close(): Promise<void>;
}

/**
 * Why a WebSocket upgrade request is refused, or undefined if it is one the real service takes (path and
 * subprotocol; the handshake's own rules, key and version, are the `ws` library's).
 */
export function upgradeRefusal(url: string | undefined, subprotocols: string | undefined): string | undefined {
  const path = (url ?? '').split('?', 1)[0];
  if (path !== WEBSOCKET_PATH) return `path must be ${WEBSOCKET_PATH}`;
  const offered = (subprotocols ?? '').split(',').map((p) => p.trim());
  if (!offered.includes(WEBSOCKET_SUBPROTOCOL)) return `Sec-WebSocket-Protocol must offer "${WEBSOCKET_SUBPROTOCOL}"`;
  return undefined;
}

/**
 * `handle` is the broker's: it gets one duplex stream per accepted connection. `log` gets one line per refused
 * upgrade (its path, cut short and made printable; no query string and no header value).
 */
export function createMqttWebSocketServer(tls: TlsMaterial, handle: (stream: Duplex) => void, log: (line: string) => void): MqttWebSocketServer {
  const upgraded = new Set<Duplex>();
  const wss = new WebSocket.Server({
    noServer: true,
    maxPayload: MAX_MESSAGE_BYTES,
    clientTracking: false,
    // Answer `mqtt` whatever else the client offers (upgradeRefusal made sure it is offered).
    handleProtocols: () => WEBSOCKET_SUBPROTOCOL,
  });
  const server = createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    // Not an upgrade: this port carries MQTT over WebSockets only (the HTTPS device API has its own port).
    res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
    res.end(`MQTT over WebSockets only: connect with a WebSocket upgrade to ${WEBSOCKET_PATH}, subprotocol ${WEBSOCKET_SUBPROTOCOL}\n`);
    req.resume();
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    socket.on('error', () => {}); // a device dropping mid-handshake is not the emulator's problem
    const why = upgradeRefusal(req.url, req.headers['sec-websocket-protocol']);
    if (why !== undefined) {
      // The path only: a query string could carry anything, a token included.
      log(`websocket upgrade refused (400) for ${printable((req.url ?? '').split('?', 1)[0])}: ${why}`);
      const body = `${why}\n`;
      socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const stream = WebSocket.createWebSocketStream(ws);
      stream.on('error', () => {}); // aedes sees the close; a reset socket must not crash the emulator
      handle(stream);
    });
  });
  server.on('tlsClientError', () => {});

  return {
    server,
    close: () =>
      new Promise<void>((resolve) => {
        // Upgraded sockets are no longer the HTTP server's: end them here so close() does not wait on a device.
        for (const socket of upgraded) socket.destroy();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function printable(s: string | undefined): string {
  return (s ?? '').replace(/[^\x20-\x7e]/g, '?').slice(0, 80);
}
