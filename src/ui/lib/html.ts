/** htm bound to Preact's `h` (htm/preact): tagged templates instead of JSX, no build-time transform. */
export { html } from 'htm/preact';
