// The wire protocol version carried as `v` in every message, frame and manifest. Bump it only for an
// incompatible change; added optional fields do not need a bump (validators ignore unknown fields).
export const PROTO_VERSION = 1;
/** Image manifest format version (manifest.json `formatVersion`). */
export const MANIFEST_VERSION = 1;
