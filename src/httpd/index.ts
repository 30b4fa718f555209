/** The HTTP server: dispy's JSON API, Server-Sent Events and the pages, for a program's clusters. */
export { DispyHTTPServer, type DispyHTTPServerOptions, type HttpLimits, type HttpServerAddress } from './dispy-http-server.js';
export type { TrustedProxy } from '../protocol/http-guard.js';
export type { AuthOptions } from './security.js';
export { hashPassword, verifyPassword, type Role, type UserOptions } from './users.js';
export type { LoginRateLimit } from './login-limiter.js';
export type { EventLog, EventEntry, EventKind, EventResult, NewEntry } from './event-log.js';
export type { JobHistory, JobRecordJson, HistoryQuery } from './job-history.js';
export type { ViewedCluster, JobCounters, ClusterNote } from './cluster-view.js';
export type { NodeJson, JobJson, AvailInfoJson } from './node-json.js';
