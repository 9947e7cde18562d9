// Entry of the bundled pccl throughput bench (bench/gpu/pack.sh bundles it; `bash bench/gpu/run.sh pccl` runs it).
import { main } from '../pccl.ts';

await main(process.argv.slice(2));
