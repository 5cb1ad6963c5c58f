export * from "./processes.js";
export * from "./certs.js";
export * from "./stack.js";
export * from "./paths.js";
export * from "./assertions.js";
