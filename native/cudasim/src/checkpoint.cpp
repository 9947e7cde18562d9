#include "checkpoint.h"
namespace phos::cudasim::checkpoint {
void start_helper() {}
}
