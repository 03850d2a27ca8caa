// The roles are core's (core/operator-roles.ts), published to the CLI and console by contract/constants.ts.
export { operatorRoles } from "../core/index.js";
