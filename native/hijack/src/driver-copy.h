// The driver checkpoint's host copy (driver-copy.cpp says why it matters): libphos notes the large
// anonymous mappings the driver makes while the app is frozen, and on the agent's word drops their
// whole zero pages before CRIU dumps them.
#pragma once
#include <cstdint>

namespace phos::hijack {

/// From the freeze on: note the driver's large anonymous mappings; resets the shed mailbox. false: no
/// driver library to watch (nothing will be noted or served: the mailbox is not offered).
bool driver_copy_arm();

/// At the thaw: stops noting and serving.
void driver_copy_disarm();

/// The shed mailbox's address (four u64: request, done, bytes scanned, bytes dropped), for the freeze reply.
uint64_t driver_copy_mailbox();

/// Frozen link thread: waits up to `ns`, serving a shed request the agent wrote into the mailbox meanwhile.
void driver_copy_wait(long ns);

}  // namespace phos::hijack
