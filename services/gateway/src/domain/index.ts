// @paygate/gateway/domain: what the gateway's domain offers code outside the
// service (the simulator in test/sim, the chaos checkers, the benches) on
// purpose — the coordinator and its round engine's ports, the card use cases,
// the replica duties, the bank-answer rules and the model's records. Anything
// not named here is the service's own and may change without notice; the
// architecture test keeps test/ and bench/ from reaching past this list.
export { createCoordinator, type Coordinator } from "./coordinator.js";
export { createDecidedFeed } from "./decided-feed.js";
export { createReplicaDuties } from "./replicas.js";
export { banksOf } from "./rounds/transfer.js";
export type { TransferRequest } from "./transfer-rules.js";
export {
  deliveryOfFailure,
  knownVoteOf,
  UNKNOWN_ANSWER_VOTE,
  voteOfFailure,
  type DecisionKind,
} from "./participant-replies.js";
export {
  StoreUnavailableError,
  type CoordinatorLog,
  type Delivery,
  type EventLogger,
  type Leg,
  type Participants,
  type ReplicaLeases,
  type Vote,
} from "./ports.js";
export type { Decision, DirectoryAccount, Result, TxnRecord } from "./model.js";
export {
  CAPTURE_FINAL_REASONS,
  createCards,
  type Cards,
  type IssuedCard,
  type Refunded,
  type SettleItemInput,
  type Settlement,
} from "./cards.js";
export { createCardHasher } from "./cards-crypto.js";
export type {
  AuthChange,
  AuthExpect,
  AuthRecord,
  AuthStatus,
  BatchItemRecord,
  BatchRecord,
  CardRecord,
  CardStore,
  CreditReportResult,
  CreditReports,
  RefundEnd,
  RefundRecord,
  RefundReservation,
  RefundStart,
} from "./cards-ports.js";
