// An account as its owner reads it (the public API's Account message without
// its protobuf types): the gateway's queries answer with it, a client shows it.

export interface AccountView {
  readonly accountId: string;
  readonly bank: string;
  readonly ownerUserId: string;
  readonly currency: string;
  readonly balanceMinor: bigint;
  readonly heldMinor: bigint;
  readonly availableMinor: bigint;
}
