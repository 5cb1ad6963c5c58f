export * from "./metrics.js";
export * from "./interceptors.js";
export * from "./tracing.js";
export * from "./ops-server.js";
export * from "./shutdown.js";
export * from "./settings.js";
export * from "./service.js";
export * from "./listen.js";
