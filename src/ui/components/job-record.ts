/**
 * A finished job's detail view (from the Jobs page): every field the history keeps, its
 * exception and the tails of its stdout and stderr, in a modal dialog that closes with Escape
 * or its close button and gives the focus back.
 */
import { useEffect, useRef } from 'preact/hooks';
import { formatDateTime, formatFixed } from '../lib/format.js';
import { html } from '../lib/html.js';
import type { JobRecordJson } from '../lib/types.js';

/** Seconds between two ms timestamps, or null. */
export function runSeconds(j: Pick<JobRecordJson, 'start_time_ms' | 'end_time_ms'>): number | null {
  return j.start_time_ms && j.end_time_ms ? Math.max(0, (j.end_time_ms - j.start_time_ms) / 1000) : null;
}

export function StatusTag({ status }: { status: string }) {
  return html`<span class=${`jstatus jstatus-${status.toLowerCase()}`}>${status}</span>`;
}

function Stream({ label, text, length, testid }: { label: string; text: string; length: number; testid: string }) {
  if (!text) return html`<div class="stream"><h3>${label}</h3><p class="muted">(empty)</p></div>`;
  return html`<div class="stream">
    <h3>${label}${length > text.length ? html` <span class="muted">(the last ${text.length} of ${length} characters)</span>` : null}</h3>
    <pre class="out" data-testid=${testid} tabindex="0">${text}</pre>
  </div>`;
}

export function JobRecordDetail({ job, onClose }: { job: JobRecordJson; onClose(): void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    const opener = document.activeElement as HTMLElement | null;
    if (d && !d.open) d.showModal();
    const close = () => onClose();
    d?.addEventListener('close', close);
    return () => {
      d?.removeEventListener('close', close);
      if (opener && document.contains(opener)) opener.focus();
    };
  }, []);
  const run = runSeconds(job);
  const rows: Array<[string, unknown, string]> = [
    ['Job ID', html`<span class="mono">${job.job_id}</span>`, 'job-id'],
    ['Status', html`<${StatusTag} status=${job.status} />`, 'status'],
    ['Cluster', job.cluster, 'cluster'],
    [
      'Node',
      job.node
        ? html`<a href=${`node.html?host=${encodeURIComponent(job.node)}`}>${job.node}</a>${job.node_name && job.node_name !== job.node ? ` (${job.node_name})` : ''}`
        : 'none (it never ran)',
      'node',
    ],
    ['Arguments', job.args || '—', 'args'],
    ['Submitted', formatDateTime(job.submit_time_ms), 'submitted'],
    ['Started', job.start_time_ms ? formatDateTime(job.start_time_ms) : '—', 'started'],
    ['Ended', job.end_time_ms ? formatDateTime(job.end_time_ms) : '—', 'ended'],
    ['Run time', run === null ? '—' : `${formatFixed(run, 3)} s`, 'run-time'],
  ];
  return html`<dialog class="sheet wide" ref=${ref} aria-labelledby="record-title" data-testid="history-detail">
    <div class="panel-head">
      <h2 id="record-title">Job <span class="mono">${job.job_id}</span></h2>
      <button type="button" class="btn btn-icon" aria-label="Close job details" onClick=${() => ref.current?.close()}>✕</button>
    </div>
    <dl class="fields one-col">
      ${rows.map(([k, v, id]) => html`<div class="field-row" key=${k}><dt>${k}</dt><dd data-field=${id}>${v}</dd></div>`)}
    </dl>
    ${job.exception ? html`<div class="stream"><h3>Exception</h3><pre class="out out-err" data-testid="history-exception" tabindex="0">${job.exception}</pre></div>` : null}
    <${Stream} label="Standard output" text=${job.stdout} length=${job.stdout_length} testid="history-stdout" />
    <${Stream} label="Standard error" text=${job.stderr} length=${job.stderr_length} testid="history-stderr" />
  </dialog>`;
}
