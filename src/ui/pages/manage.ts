/**
 * Manage page (`manage.html`): the seed's §5.3.3. The nodes of the chosen cluster with their CPUs
 * editable (validated against what each node offers), and adding nodes by host name, IP address
 * or wildcard with CPUs and port (CPUs disabled, with the reason, for a wildcard or a
 * SharedJobCluster). Every action's result is shown beside what it acted on.
 */
import { Component, render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { postForm, replyError, serverPollSec } from '../lib/api.js';
import { compareIp } from '../lib/format.js';
import { html } from '../lib/html.js';
import { LiveFeed } from '../lib/live.js';
import { loadPref, savePref } from '../lib/prefs.js';
import { ClusterStore, COMBINED, type ClusterView, type NodeRec } from '../lib/store.js';
import {
  clusterField,
  clusterLabel,
  ClusterSelect,
  initialInterval,
  IntervalControl,
  Messages,
  noteLog,
  OfflineBanner,
  pickView,
  say,
  StateBadge,
  TopBar,
  ViewerNote,
} from '../components/common.js';
import { canAct } from '../lib/session.js';
import { useRowWindow } from '../components/windowing.js';

const store = new ClusterStore();
const feed = new LiveFeed({ store, intervalSec: initialInterval(serverPollSec()), onLog: noteLog });

const ROW_H = 52;
/** How long an added node may take to show up before the page says it has not. */
const JOIN_WAIT_MS = 20_000;

type Result = { kind: 'ok' | 'err' | 'pending'; text: string };

/** Why a CPUs value is not acceptable for a node offering `avail` CPUs ('' when it is). */
export function cpusError(text: string, avail: number): string {
  const s = text.trim();
  if (!/^-?\d+$/.test(s)) return 'Enter a whole number of CPUs';
  const n = Number(s);
  if (avail > 0 && Math.abs(n) > avail) return `The node offers ${avail} CPU${avail === 1 ? '' : 's'}: use -${avail} to ${avail}`;
  return '';
}

interface CpuRowProps {
  rec: NodeRec;
  index: number;
  edit: string | undefined;
  result: Result | undefined;
  disabled: boolean;
  /** Whether the CPUs are an input (admins) or text (viewers). */
  editable: boolean;
  onEdit(ip: string, v: string): void;
}

class CpuRow extends Component<CpuRowProps> {
  override shouldComponentUpdate(n: CpuRowProps): boolean {
    const p = this.props;
    return (
      n.rec !== p.rec ||
      n.index !== p.index ||
      n.edit !== p.edit ||
      n.result !== p.result ||
      n.disabled !== p.disabled ||
      n.editable !== p.editable
    );
  }

  override render({ rec: r, index, edit, result, disabled, editable, onEdit }: CpuRowProps) {
    const value = edit ?? String(r.cpus);
    const err = edit !== undefined ? cpusError(edit, r.availCpus) : '';
    const id = `cpus-${index}`;
    return html`<tr class=${`row st-${r.state}${index & 1 ? ' odd' : ''}`} data-ip=${r.ip}>
      <td class="num idx">${index + 1}</td>
      <td class="c-ip"><a class="hit" href=${`node.html?host=${encodeURIComponent(r.ip)}`}>${r.ip}</a></td>
      <td class="c-name" title=${r.name}>${r.name || '—'}</td>
      <td class="c-state"><${StateBadge} state=${r.state} /></td>
      <td class="num">${r.availCpus}</td>
      <td class="num cpus-cell">
        ${
          editable
            ? html`<label class="sr-only" for=${id}>CPUs of ${r.ip}</label>
        <input id=${id} type="number" step="1" min=${-r.availCpus} max=${r.availCpus} value=${value} disabled=${disabled}
          class=${edit !== undefined && edit !== String(r.cpus) ? 'dirty' : ''} aria-invalid=${err ? 'true' : undefined}
          aria-describedby=${`${id}-msg`} data-testid="cpus-input"
          onInput=${(e: Event) => onEdit(r.ip, (e.target as HTMLInputElement).value)} />`
            : html`<span data-testid="cpus-text">${r.cpus}</span>`
        }
      </td>
      <td id=${`${id}-msg`} class=${`outcome wrap ${err ? 'outcome-err' : result ? `outcome-${result.kind}` : ''}`} data-testid="cpus-result">${err || result?.text || ''}</td>
    </tr>`;
  }
}

function NodesCpus({ view, viewKey, version }: { view: ClusterView; viewKey: string; version: number }) {
  const rows = useMemo(() => [...view.nodes.values()].sort((a, b) => compareIp(a.ip, b.ip, a.ipKey, b.ipKey)), [view, version]);
  const [edits, setEdits] = useState<ReadonlyMap<string, string>>(new Map());
  const [results, setResults] = useState<ReadonlyMap<string, Result>>(new Map());
  const [busy, setBusy] = useState(false);
  const body = useRef<HTMLTableSectionElement>(null);
  const win = useRowWindow(rows.length, ROW_H, body);
  useEffect(() => {
    setEdits(new Map());
    setResults(new Map());
  }, [viewKey]);
  const onEdit = (ip: string, v: string) => setEdits((prev) => new Map(prev).set(ip, v));
  const shared = view.shared;
  const admin = canAct.value;
  const changed = rows.filter((r) => {
    const e = edits.get(r.ip);
    return e !== undefined && e.trim() !== String(r.cpus);
  });
  const invalid = changed.filter((r) => cpusError(edits.get(r.ip)!, r.availCpus));

  const submit = async (e: Event) => {
    e.preventDefault();
    if (changed.length === 0) {
      say('No CPUs changed.', 'info');
      return;
    }
    if (invalid.length) {
      say(`Fix the CPUs of ${invalid.map((r) => r.ip).join(', ')} first.`, 'error');
      return;
    }
    setBusy(true);
    const pending = new Map(results);
    for (const r of changed) pending.set(r.ip, { kind: 'pending', text: 'Setting…' });
    setResults(pending);
    const reply = await postForm<Record<string, number>>(
      'set_cpus',
      changed.map((r) => [r.ip, edits.get(r.ip)!.trim()] as [string, string]),
    );
    setBusy(false);
    const next = new Map(pending);
    const nextEdits = new Map(edits);
    for (const r of changed) {
      const v = reply.ok && reply.body ? reply.body[r.ip] : undefined;
      if (!reply.ok) next.set(r.ip, { kind: 'err', text: `Failed: ${replyError(reply)}` });
      else if (typeof v === 'number' && v >= 0) {
        next.set(r.ip, { kind: 'ok', text: `CPUs now ${v}` });
        nextEdits.delete(r.ip);
      } else next.set(r.ip, { kind: 'err', text: v === undefined ? 'No cluster uses this node now' : 'Refused by the cluster' });
    }
    setResults(next);
    setEdits(nextEdits);
    const ok = changed.filter((r) => next.get(r.ip)?.kind === 'ok').length;
    say(`CPUs updated on ${ok} of ${changed.length} node${changed.length === 1 ? '' : 's'}.`, ok === changed.length ? 'ok' : 'error');
    void feed.refresh();
  };

  return html`<section class="card" aria-labelledby="nodes-h">
    <div class="card-head">
      <h2 id="nodes-h" class="card-title">Nodes in Cluster <span class="muted">(${rows.length})</span></h2>
    </div>
    ${
      shared
        ? html`<p class="help" role="note" data-testid="cpus-disabled">CPUs cannot be changed here: ${viewKey === COMBINED ? 'a SharedJobCluster is among the clusters' : 'this is a SharedJobCluster'}, whose nodes' CPUs the scheduler manages.</p>`
        : html`<p class="help">CPUs the cluster may use on each node: 0 to what the node offers, or a negative number for all but that many. Lowering them stops new jobs beyond the limit; running jobs finish.${viewKey === COMBINED || store.clusters.size > 1 ? ' A change applies to every cluster that uses the node.' : ''}</p>`
    }
    <form onSubmit=${submit}>
      <div class="table-wrap">
        <table class="data manage" data-testid="manage-table" aria-labelledby="nodes-h">
          <thead>
            <tr>
              <th scope="col" class="num idx">#</th>
              <th scope="col" class="c-ip">IP Address</th>
              <th scope="col" class="c-name">Host Name</th>
              <th scope="col" class="c-state">State</th>
              <th scope="col" class="num c-avail"><span class="t-long">Available CPUs</span><span class="t-short" aria-hidden="true">Avail</span></th>
              <th scope="col" class="num c-cpusin"><span class="t-long">Cluster </span>CPUs</th>
              <th scope="col" class="c-result">Result</th>
            </tr>
          </thead>
          <tbody ref=${body}>
            ${win.start > 0 ? html`<tr class="spacer" aria-hidden="true" style=${{ height: `${win.start * ROW_H}px` }}><td colspan="7"></td></tr>` : null}
            ${rows
              .slice(win.start, win.end)
              .map(
                (r, i) =>
                  html`<${CpuRow} key=${r.ip} rec=${r} index=${win.start + i} edit=${edits.get(r.ip)} result=${results.get(r.ip)} disabled=${shared || busy} editable=${admin} onEdit=${onEdit} />`,
              )}
            ${win.end < rows.length ? html`<tr class="spacer" aria-hidden="true" style=${{ height: `${(rows.length - win.end) * ROW_H}px` }}><td colspan="7"></td></tr>` : null}
            ${rows.length === 0 ? html`<tr class="empty"><td colspan="7">No nodes in this cluster yet.</td></tr>` : null}
          </tbody>
        </table>
      </div>
      ${
        admin
          ? html`<div class="actions form-foot">
            <button type="submit" class="btn btn-primary" disabled=${shared || busy || changed.length === 0} data-testid="update-cpus">Update CPUs${changed.length ? ` (${changed.length})` : ''}</button>
            ${changed.length ? html`<button type="button" class="btn" onClick=${() => setEdits(new Map())}>Undo changes</button>` : null}
          </div>`
          : html`<${ViewerNote} what="changing CPUs and adding nodes" />`
      }
    </form>
  </section>`;
}

interface AddRow {
  id: number;
  host: string;
  cpus: string;
  port: string;
  result?: Result;
  /** While waiting for the node to join: where to look and until when. */
  watch?: { host: string; until: number };
}

let rowId = 0;
const newRow = (): AddRow => ({ id: ++rowId, host: '', cpus: '', port: '' });

function hostError(host: string): string {
  const h = host.trim();
  if (!h) return '';
  if (!/^[A-Za-z0-9._:*%[\]-]{1,255}$/.test(h)) return 'A host name, an IP address or a wildcard such as 192.168.1.*';
  return '';
}

function portError(port: string): string {
  const p = port.trim();
  if (!p) return '';
  if (!/^\d+$/.test(p) || Number(p) < 1 || Number(p) > 65535) return 'A port from 1 to 65535';
  return '';
}

function AddNodes({ viewKey, view, version }: { viewKey: string; view: ClusterView | undefined; version: number }) {
  const [rows, setRows] = useState<AddRow[]>(() => [newRow(), newRow(), newRow()]);
  const [busy, setBusy] = useState(false);
  const shared = !!view?.shared;
  const set = (id: number, patch: Partial<AddRow>) => setRows((prev) => prev.map((r) => (r.id === id ? { ...r, ...patch } : r)));

  // Report when a requested node joined (or did not, in time).
  useEffect(() => {
    const watching = rows.filter((r) => r.watch);
    if (watching.length === 0) return;
    const check = () => {
      const now = Date.now();
      let changed = false;
      const next = rows.map((r) => {
        if (!r.watch) return r;
        const v = store.view(viewKey);
        const h = r.watch.host;
        const joined = v ? [...v.nodes.values()].find((n) => (n.ip === h || n.name === h) && n.state !== 'closed') : undefined;
        if (joined) {
          changed = true;
          return {
            ...r,
            watch: undefined,
            result: { kind: 'ok' as const, text: `Joined: ${joined.ip}, ${joined.cpus} CPU${joined.cpus === 1 ? '' : 's'}` },
          };
        }
        if (now > r.watch.until) {
          changed = true;
          return {
            ...r,
            watch: undefined,
            result: { kind: 'err' as const, text: 'Not joined yet: is a node running there with this secret?' },
          };
        }
        return r;
      });
      if (changed) setRows(next);
    };
    check();
    const t = setInterval(check, 1000);
    return () => clearInterval(t);
  }, [rows, version, viewKey]);

  const submit = async (e: Event) => {
    e.preventDefault();
    const todo = rows.filter((r) => r.host.trim());
    if (todo.length === 0) {
      say('Enter a host name, IP address or wildcard to add.', 'info');
      return;
    }
    const bad = todo.filter((r) => hostError(r.host) || portError(r.port) || (r.cpus.trim() && !/^-?\d+$/.test(r.cpus.trim())));
    if (bad.length) {
      say('Fix the highlighted rows first.', 'error');
      return;
    }
    setBusy(true);
    setRows((prev) => prev.map((r) => (r.host.trim() ? { ...r, result: { kind: 'pending', text: 'Adding…' }, watch: undefined } : r)));
    await Promise.all(
      todo.map(async (r) => {
        const host = r.host.trim();
        const wildcard = host.includes('*');
        const fields: Array<[string, string]> = [
          ['host', host],
          ['cluster', clusterField(viewKey)],
          ['id', String(r.id)],
        ];
        if (r.port.trim()) fields.push(['port', r.port.trim()]);
        if (r.cpus.trim() && !wildcard && !shared) fields.push(['cpus', r.cpus.trim()]);
        const reply = await postForm<{ host: string; port: number; cpus: number; message?: string; cpus_ignored?: boolean }>(
          'add_node',
          fields,
        );
        if (!reply.ok || !reply.body) {
          set(r.id, { result: { kind: 'err', text: `Failed: ${replyError(reply)}` } });
          say(`Adding ${host} failed: ${replyError(reply)}`, 'error');
          return;
        }
        const b = reply.body;
        const note = b.message ? ` (${b.message})` : '';
        if (wildcard) {
          set(r.id, { result: { kind: 'ok', text: `Requested nodes matching ${host}${note}` } });
        } else {
          set(r.id, {
            result: { kind: 'pending', text: `Requested ${b.host}:${b.port}; waiting for it to join…${note}` },
            watch: { host, until: Date.now() + JOIN_WAIT_MS },
          });
        }
        say(`Asked ${clusterLabel(viewKey)} to add ${host}${b.port ? ` (port ${b.port})` : ''}${note}.`, 'ok');
      }),
    );
    setBusy(false);
    void feed.refresh();
  };

  return html`<section class="card" aria-labelledby="add-h">
    <h2 id="add-h" class="card-title">Add Nodes</h2>
    <p class="help">A host name, an IP address, or a wildcard such as <span class="mono">192.168.1.*</span> (nodes the cluster can discover). CPUs and port are optional${viewKey === COMBINED ? '; nodes are added to every cluster' : ''}.</p>
    ${
      shared
        ? html`<p class="help" role="note" data-testid="add-cpus-ignored">CPUs are ignored when adding a node to ${viewKey === COMBINED ? 'a SharedJobCluster (one is among the clusters)' : 'this SharedJobCluster'}: its nodes belong to a <span class="mono">dispyts scheduler</span>, which decides how many of their CPUs each cluster uses.</p>`
        : null
    }
    <form onSubmit=${submit}>
      <div class="scroll-x">
        <table class="data add" data-testid="add-table">
          <thead>
            <tr>
              <th scope="col" class="num idx">#</th>
              <th scope="col" class="c-host">Host Name or IP</th>
              <th scope="col" class="c-cpusin">CPUs</th>
              <th scope="col" class="c-port">Port</th>
              <th scope="col" class="c-result">Result</th>
            </tr>
          </thead>
          <tbody>
            ${rows.map((r, i) => {
              const wildcard = r.host.includes('*');
              const cpusReason = shared ? 'CPUs are ignored for a SharedJobCluster' : wildcard ? 'CPUs are ignored for a wildcard' : '';
              const hErr = hostError(r.host);
              const pErr = portError(r.port);
              const cErr = !cpusReason && r.cpus.trim() && !/^-?\d+$/.test(r.cpus.trim()) ? 'CPUs must be a whole number' : '';
              const msg = hErr || pErr || cErr || cpusReason;
              return html`<tr key=${r.id} data-row=${i}>
                <td class="num idx">${i + 1}</td>
                <td><label class="sr-only" for=${`add-host-${r.id}`}>Host name or IP, row ${i + 1}</label>
                  <input id=${`add-host-${r.id}`} type="text" autocomplete="off" spellcheck=${false} value=${r.host} aria-invalid=${hErr ? 'true' : undefined}
                    aria-describedby=${`add-msg-${r.id}`} data-testid="add-host" onInput=${(e: Event) => set(r.id, { host: (e.target as HTMLInputElement).value })} /></td>
                <td><label class="sr-only" for=${`add-cpus-${r.id}`}>CPUs, row ${i + 1}</label>
                  <input id=${`add-cpus-${r.id}`} type="number" step="1" value=${cpusReason ? '' : r.cpus} disabled=${!!cpusReason} title=${cpusReason || undefined}
                    aria-invalid=${cErr ? 'true' : undefined} aria-describedby=${`add-msg-${r.id}`} data-testid="add-cpus" onInput=${(e: Event) => set(r.id, { cpus: (e.target as HTMLInputElement).value })} /></td>
                <td><label class="sr-only" for=${`add-port-${r.id}`}>Port, row ${i + 1}</label>
                  <input id=${`add-port-${r.id}`} type="number" min="1" max="65535" step="1" value=${r.port} placeholder="9701" aria-invalid=${pErr ? 'true' : undefined}
                    aria-describedby=${`add-msg-${r.id}`} data-testid="add-port" onInput=${(e: Event) => set(r.id, { port: (e.target as HTMLInputElement).value })} /></td>
                <td id=${`add-msg-${r.id}`} class=${`outcome wrap ${hErr || pErr || cErr ? 'outcome-err' : r.result ? `outcome-${r.result.kind}` : 'muted'}`} data-testid="add-result">${r.result && !hErr && !pErr && !cErr ? r.result.text : msg}</td>
              </tr>`;
            })}
          </tbody>
        </table>
      </div>
      <div class="actions form-foot">
        <button type="submit" class="btn btn-primary" disabled=${busy || !view} data-testid="add-nodes">Add Nodes</button>
        <button type="button" class="btn" onClick=${() => setRows((prev) => [...prev, newRow()])}>Add another row</button>
      </div>
    </form>
  </section>`;
}

function ManageApp() {
  const version = store.version.value;
  const [wanted, setWanted] = useState(loadPref('cluster', ''));
  const key = pickView(store, wanted);
  const view = store.view(key);
  return html`<${TopBar} active="manage" feed=${feed} />
    <main class="container" id="main">
      <div class="page-head"><h1>Manage Nodes</h1>${view ? html`<p class="subtitle">${clusterLabel(key)}</p>` : null}</div>
      <${OfflineBanner} feed=${feed} />
      <section class="card" aria-label="Settings">
        <div class="controls-row">
          <${ClusterSelect} store=${store} value=${key} onChange=${(k: string) => {
            setWanted(k);
            savePref('cluster', k);
          }} />
          <${IntervalControl} feed=${feed} />
        </div>
      </section>
      ${view ? html`<${NodesCpus} view=${view} viewKey=${key} version=${version} />` : html`<section class="card empty-state"><p>${feed.lastUpdate.value ? 'The server follows no cluster yet.' : 'Loading…'}</p></section>`}
      ${canAct.value ? html`<${AddNodes} viewKey=${key} view=${view} version=${version} />` : null}
      <${Messages} />
    </main>`;
}

render(html`<${ManageApp} />`, document.getElementById('app')!);
feed.start();
