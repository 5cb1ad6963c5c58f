// Who is making a call, once a session token has been checked. A domain word,
// not a transport one: the gateway's auth use case produces it and its rules
// take it, while @paygate/rpc only carries it through a call's context.

export interface Caller {
  readonly userId: string;
  readonly roles: readonly string[];
}
