// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @title Kinesis escrow interface
/// @notice Payers prepay tokens; each kernel session locks a cap for one provider; the payer (or
/// a session key) signs cumulative EIP-712 vouchers; anyone submits them and the provider is paid
/// the difference in the same transaction; the payer gets `cap - claimed` back on close.
interface IKinesisEscrow {
    /// @notice Cumulative voucher. Signed as EIP-712 typed data
    /// `Voucher(bytes32 sessionId,uint256 cumulativeAmount,uint256 cumulativeEnergyMj)` in the
    /// domain `{name: "KinesisEscrow", version: "1", chainId, verifyingContract}`.
    struct Voucher {
        bytes32 sessionId;
        uint256 cumulativeAmount;
        uint256 cumulativeEnergyMj;
    }

    /// @notice A session as seen from outside. An unknown id reads as all zeros (provider == 0).
    struct Session {
        address payer;
        address provider;
        address signer;
        uint256 cap;
        uint256 claimed;
        uint256 claimedEnergyMj;
        uint64 expiresAt;
        bool closed;
    }

    event Deposited(address indexed payer, address indexed from, uint256 amount);
    event Withdrawn(address indexed payer, uint256 amount);
    event SessionOpened(
        bytes32 indexed sessionId,
        address indexed payer,
        address indexed provider,
        address signer,
        uint256 cap,
        uint64 expiresAt
    );
    event SessionToppedUp(bytes32 indexed sessionId, uint256 amount, uint256 newCap, uint64 newExpiresAt);
    event Claimed(
        bytes32 indexed sessionId,
        address indexed provider,
        uint256 amount,
        uint256 cumulativeAmount,
        uint256 cumulativeEnergyMj
    );
    event SessionClosed(bytes32 indexed sessionId, address indexed closedBy, uint256 claimed, uint256 refunded);

    error InvalidToken(address token);
    error ZeroAmount();
    error InvalidPayer(address payer);
    error InvalidProvider(address provider);
    error InvalidSigner(address signer);
    error AmountTooLarge(uint256 amount, uint256 max);
    error InsufficientBalance(address payer, uint256 available, uint256 needed);
    error ExpiryInPast(uint64 expiresAt, uint256 timestamp);
    error ExpiryShortened(bytes32 sessionId, uint64 expiresAt, uint64 newExpiresAt);
    error UnknownSession(bytes32 sessionId);
    error SessionIsClosed(bytes32 sessionId);
    error NotPayer(bytes32 sessionId, address caller);
    error NotAllowedToClose(bytes32 sessionId, address caller);
    error CloseTooEarly(bytes32 sessionId, uint256 allowedAt);
    /// @param reason OpenZeppelin's ECDSA.RecoverError: 1 invalid, 2 bad length, 3 high s.
    error InvalidSignature(bytes32 sessionId, uint8 reason, bytes32 detail);
    error UnauthorizedSigner(bytes32 sessionId, address recovered);
    error NonIncreasingAmount(bytes32 sessionId, uint256 claimed, uint256 cumulativeAmount);
    error CapExceeded(bytes32 sessionId, uint256 cap, uint256 cumulativeAmount);
    error EnergyDecreased(bytes32 sessionId, uint256 claimedEnergyMj, uint256 cumulativeEnergyMj);
    error LengthMismatch(uint256 vouchers, uint256 signatures);
    error EmptyBatch();

    function token() external view returns (IERC20);
    function closeGrace() external view returns (uint64);

    function deposit(uint256 amount) external;
    function depositFor(address payer, uint256 amount) external;
    function withdraw(uint256 amount) external;
    function balanceOf(address payer) external view returns (uint256);

    function openSession(address provider, address signer, uint256 cap, uint64 expiresAt)
        external
        returns (bytes32 sessionId);
    function topUp(bytes32 sessionId, uint256 amount, uint64 newExpiresAt) external;
    function claim(Voucher calldata v, bytes calldata signature) external;
    function claimBatch(Voucher[] calldata vs, bytes[] calldata signatures) external;
    function closeSession(bytes32 sessionId) external;
    function getSession(bytes32 sessionId) external view returns (Session memory);
}
