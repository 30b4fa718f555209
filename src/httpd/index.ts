/** The HTTP server: dispy's JSON API, Server-Sent Events and the pages, for a program's clusters. */
export { DispyHTTPServer, type DispyHTTPServerOptions, type HttpServerAddress } from './dispy-http-server.js';
export type { AuthOptions } from './security.js';
export type { ViewedCluster, JobCounters } from './cluster-view.js';
export type { NodeJson, JobJson, AvailInfoJson } from './node-json.js';
