// What the cluster's primary and its workers tell each other over the IPC channel.

/** Primary → worker. */
export type PrimaryMessage =
  | { readonly type: "reload" }
  | { readonly type: "drain" }
  | { readonly type: "metrics"; readonly id: number };

/** Worker → primary. */
export type WorkerMessage =
  | { readonly type: "listening"; readonly address: string }
  | { readonly type: "metrics"; readonly id: number; readonly text: string };

export function toPrimary(message: WorkerMessage): void {
  process.send?.(message);
}
