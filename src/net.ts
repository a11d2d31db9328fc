/** Whether a peer address is the local host (the application a sidecar serves, or an operator on the node). */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}
