/** For a bench's child client: exit (code 3) once the bench that started it is gone, so no client outlives its bench. */
export function exitWithParent() {
  const parent = process.ppid;
  setInterval(() => {
    try {
      process.kill(parent, 0);
    } catch {
      process.exit(3);
    }
  }, 500).unref();
}
