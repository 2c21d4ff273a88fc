// @jupyterlab/services settings for a Node client of a gateway at `url` (Node's WebSocket
// from `ws`, the token appended to the channels URL as Jupyter clients do).
import WebSocket from 'ws';
import { ServerConnection } from '@jupyterlab/services';

export function nodeServerSettings(url: string, token: string): ServerConnection.ISettings {
  return ServerConnection.makeSettings({
    baseUrl: url + '/',
    wsUrl: url.replace('http', 'ws') + '/',
    token,
    appendToken: true,
    WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
  });
}
