// @kinesis/contracts: the escrow client (pure, also at '@kinesis/contracts/browser') plus the
// Node-only pieces: a local anvil chain with the contracts deployed, and deployment files.
export * from './browser.ts';
export { deployContracts, mintTestTokens, type DeployOptions } from './deploy.ts';
export { startAnvil, anvilBinaryPath, type Anvil, type AnvilOptions, type DevAccount } from './node/anvil.ts';
export { startLocalChain, LOCAL_CLOSE_GRACE, LOCAL_FUND_AMOUNT, type LocalChain, type LocalChainOptions } from './node/local-chain.ts';
export { readDeploymentFile, writeDeploymentFile } from './node/deployment-file.ts';
