// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev The subset of forge's cheatcodes (https://book.getfoundry.sh/cheatcodes/) these tests use.
/// Declared here instead of pulling forge-std, which is not on npm in a current version.
interface Vm {
    function addr(uint256 privateKey) external pure returns (address);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function prank(address sender) external;
    function startPrank(address sender) external;
    function stopPrank() external;
    function warp(uint256 timestamp) external;
    function chainId(uint256 newChainId) external;
    function assume(bool condition) external pure;
    function label(address account, string calldata newLabel) external;
    function expectRevert(bytes calldata revertData) external;
    function expectRevert(bytes4 revertData) external;
    /// Matches only the selector of a custom error, not its arguments.
    function expectPartialRevert(bytes4 selector) external;
    function expectRevert() external;
    function expectEmit(address emitter) external;
    function snapshotState() external returns (uint256 snapshotId);
    function revertToState(uint256 snapshotId) external returns (bool success);
    function getBlockTimestamp() external view returns (uint256);

    function assertTrue(bool condition, string calldata error) external pure;
    function assertFalse(bool condition, string calldata error) external pure;
    function assertEq(uint256 left, uint256 right, string calldata error) external pure;
    function assertEq(address left, address right, string calldata error) external pure;
    function assertEq(bytes32 left, bytes32 right, string calldata error) external pure;
    function assertEq(bool left, bool right, string calldata error) external pure;
    function assertLe(uint256 left, uint256 right, string calldata error) external pure;
    function assertGe(uint256 left, uint256 right, string calldata error) external pure;
}

abstract contract TestBase {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @dev Maps x uniformly-enough into [lo, hi] (modulo bias is irrelevant for fuzzing).
    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        require(lo <= hi, "bound: lo > hi");
        if (lo == 0 && hi == type(uint256).max) return x;
        return lo + (x % (hi - lo + 1));
    }
}
