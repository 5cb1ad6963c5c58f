export * from "./processes.js";
export * from "./certs.js";
export * from "./stack.js";
export * from "./paths.js";
export * from "./assertions.js";
export * from "./redis.js";
export * from "./fake-card-gateway.js";
export * from "./checkout.js";
