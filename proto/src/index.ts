// proto: the single source of every message phos sends between processes. Other rooms import only this.
export { PROTO_VERSION, MANIFEST_VERSION } from './version.ts';
export { s, check, type Schema, type Infer } from './schema.ts';
export { ERROR_CODES, PhosError, toPhosError, isErrorCode, type ErrorCode, type WireError } from './errors.ts';
export { OPS, FRAME_SCHEMAS, FRAME_TYPES, OP_RESULTS, type Op, type Frame, type FrameType } from './frames.ts';
export { MESSAGE_SCHEMAS, MESSAGE_TYPES, MIGRATION_PHASES, MIGRATION_MODES, REPLY_SCHEMA, type Message, type MessageType, type MigrationPhase, type Reply } from './messages.ts';
export { MANIFEST_SCHEMA, type Manifest } from './manifest.ts';
export { subjects, buckets, NODE_NAME } from './subjects.ts';
export { encode, encodeFrame, decodeFrame, encodeMessage, decodeMessage, encodeReply, decodeReply } from './codec.ts';
export { CONTROL_VERBS, CONTROL_REQUEST_SCHEMAS, CONTROL_EVENT_SCHEMAS, CONTROL_PHASES, PROCESS_STATES, PROCESS_INFO_SCHEMA, CHECKPOINT_RESULT_SCHEMA, MOVE_RESULT_SCHEMA, IMAGE_AGENT_SCHEMA, IMAGE_PATHS, parseControlLine, type ControlVerb, type ControlRequest, type ControlEvent, type ControlEventType, type ControlPhase, type ProcessInfo, type ProcessStateName, type CheckpointResult, type ImageAgentSection, type ImagePath, type GpuMapEntry, type MoveResult } from './control.ts';
export { FAULT_POINTS, AGENT_FAULT_POINTS, isFaultPoint, activeFault, type FaultPoint, type AgentFaultPoint } from './faults.ts';
