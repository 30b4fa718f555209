/**
 * Who the page is signed in as (`GET /whoami`): the pages show action controls only to admins
 * (the server refuses a viewer's actions anyway), and a sign-out button when users sign in.
 */
import { computed, signal } from '@preact/signals';
import { getJson } from './api.js';
import type { WhoAmIJson } from './types.js';

/** null until the server answered. */
export const me = signal<WhoAmIJson | null>(null);

/** Whether the page may offer actions: only once the server said this is an admin. */
export const canAct = computed(() => me.value?.can_act === true);

let loading: Promise<void> | null = null;

/** Asks the server who this is (once; later calls share the answer). */
export function loadMe(): Promise<void> {
  loading ??= (async () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const r = await getJson<WhoAmIJson>('whoami');
      if (r.ok && r.body && typeof r.body.user === 'string') {
        me.value = r.body;
        return;
      }
      // 401 sends the page to the login form (api.ts); anything else is retried a few times.
      if (r.status === 401) return;
      await new Promise((res) => setTimeout(res, 1000 * (attempt + 1)));
    }
  })();
  return loading;
}
