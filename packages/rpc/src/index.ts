export * from "./errors.js";
export * from "./identity.js";
export * from "./tls.js";
export * from "./logger.js";
export * from "./server.js";
export * from "./client.js";
export * from "./interceptors.js";
