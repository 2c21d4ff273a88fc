// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IKinesisEscrow} from "./IKinesisEscrow.sol";

/// @title KinesisEscrow
/// @notice Prepaid sessions paid by cumulative EIP-712 vouchers (https://eips.ethereum.org/EIPS/eip-712).
/// @dev Gas layout (see docs/contracts.md and bench/results/gas.md):
///  - A session id is `payer << 96 | n`, where n is the payer's own session counter, so ids never
///    repeat, the payer needs no storage slot, and the counter shares the payer's balance slot.
///  - A session is three slots; a claim reads all three and rewrites two of them. None of them is
///    ever zero once opened, so a session's first claim costs the same as later ones.
///  - Reentrancy guard in transient storage (EIP-1153): needs a Cancun-or-later chain.
///  Checks, then effects and events, then the token transfer (OpenZeppelin GUIDELINES.md).
contract KinesisEscrow is IKinesisEscrow, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice keccak256("Voucher(bytes32 sessionId,uint256 cumulativeAmount,uint256 cumulativeEnergyMj)")
    bytes32 public constant VOUCHER_TYPEHASH =
        keccak256("Voucher(bytes32 sessionId,uint256 cumulativeAmount,uint256 cumulativeEnergyMj)");

    struct Account {
        uint192 balance; // free balance; 2^192 base units is far beyond any real token supply
        uint64 sessionNonce; // sessions opened so far by this payer
    }

    struct StoredSession {
        // slot 0
        address signer;
        uint64 expiresAt;
        bool closed;
        // slot 1: energy in millijoules fits 96 bits (7.9e28 mJ = 2.2e16 kWh)
        address provider;
        uint96 claimedEnergyMj;
        // slot 2
        uint128 cap;
        uint128 claimed;
    }

    IERC20 private immutable _token;
    uint64 private immutable _closeGrace;

    mapping(address payer => Account) private _accounts;
    mapping(bytes32 sessionId => StoredSession) private _sessions;

    /// @param token_ the ERC-20 paid in. Fee-on-transfer tokens are credited what actually
    ///   arrives; rebasing tokens are not supported (balances would drift from the books).
    /// @param closeGrace_ seconds after a session's expiry before its payer may close it, so the
    ///   provider has time to claim the last voucher.
    constructor(IERC20 token_, uint64 closeGrace_) EIP712("KinesisEscrow", "1") {
        if (address(token_) == address(0)) revert InvalidToken(address(token_));
        _token = token_;
        _closeGrace = closeGrace_;
    }

    // ---------------------------------------------------------------- views

    function token() external view returns (IERC20) {
        return _token;
    }

    function closeGrace() external view returns (uint64) {
        return _closeGrace;
    }

    function balanceOf(address payer) external view returns (uint256) {
        return _accounts[payer].balance;
    }

    /// @notice The id the payer's next `openSession` will return.
    function nextSessionId(address payer) external view returns (bytes32) {
        return _sessionId(payer, _accounts[payer].sessionNonce + 1);
    }

    /// @notice The payer encoded in a session id (whether or not the session exists).
    function payerOf(bytes32 sessionId) public pure returns (address) {
        return address(uint160(uint256(sessionId) >> 96));
    }

    function getSession(bytes32 sessionId) external view returns (Session memory s) {
        StoredSession storage st = _sessions[sessionId];
        if (st.provider == address(0)) return s;
        s = Session({
            payer: payerOf(sessionId),
            provider: st.provider,
            signer: st.signer,
            cap: st.cap,
            claimed: st.claimed,
            claimedEnergyMj: st.claimedEnergyMj,
            expiresAt: st.expiresAt,
            closed: st.closed
        });
    }

    /// @notice The EIP-712 digest a voucher's signature must sign.
    function hashVoucher(Voucher calldata v) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, v.sessionId, v.cumulativeAmount, v.cumulativeEnergyMj)));
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---------------------------------------------------------------- balances

    function deposit(uint256 amount) external nonReentrant {
        _deposit(msg.sender, amount);
    }

    function depositFor(address payer, uint256 amount) external nonReentrant {
        if (payer == address(0)) revert InvalidPayer(payer);
        _deposit(payer, amount);
    }

    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Account storage a = _accounts[msg.sender];
        uint256 bal = a.balance;
        if (bal < amount) revert InsufficientBalance(msg.sender, bal, amount);
        a.balance = uint192(bal - amount);
        emit Withdrawn(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------- sessions

    function openSession(address provider, address signer, uint256 cap, uint64 expiresAt)
        external
        nonReentrant
        returns (bytes32 sessionId)
    {
        if (provider == address(0)) revert InvalidProvider(provider);
        // A provider holding the session key could sign its own vouchers up to the cap.
        if (signer == provider) revert InvalidSigner(signer);
        if (cap == 0) revert ZeroAmount();
        if (cap > type(uint128).max) revert AmountTooLarge(cap, type(uint128).max);
        if (expiresAt <= block.timestamp) revert ExpiryInPast(expiresAt, block.timestamp);

        Account memory a = _accounts[msg.sender];
        if (a.balance < cap) revert InsufficientBalance(msg.sender, a.balance, cap);
        uint64 nonce = a.sessionNonce + 1;
        _accounts[msg.sender] = Account({balance: uint192(a.balance - cap), sessionNonce: nonce});

        sessionId = _sessionId(msg.sender, nonce);
        _sessions[sessionId] = StoredSession({
            signer: signer,
            expiresAt: expiresAt,
            closed: false,
            provider: provider,
            claimedEnergyMj: 0,
            cap: uint128(cap),
            claimed: 0
        });
        emit SessionOpened(sessionId, msg.sender, provider, signer, cap, expiresAt);
    }

    function topUp(bytes32 sessionId, uint256 amount, uint64 newExpiresAt) external nonReentrant {
        StoredSession storage st = _openSession(sessionId);
        address payer = payerOf(sessionId);
        if (msg.sender != payer) revert NotPayer(sessionId, msg.sender);
        uint64 expiresAt = st.expiresAt;
        if (newExpiresAt < expiresAt) revert ExpiryShortened(sessionId, expiresAt, newExpiresAt);
        if (newExpiresAt <= block.timestamp) revert ExpiryInPast(newExpiresAt, block.timestamp);
        uint256 newCap = uint256(st.cap) + amount;
        if (newCap > type(uint128).max) revert AmountTooLarge(newCap, type(uint128).max);

        Account storage a = _accounts[payer];
        uint256 bal = a.balance;
        if (bal < amount) revert InsufficientBalance(payer, bal, amount);
        a.balance = uint192(bal - amount);
        st.cap = uint128(newCap);
        st.expiresAt = newExpiresAt;
        emit SessionToppedUp(sessionId, amount, newCap, newExpiresAt);
    }

    function claim(Voucher calldata v, bytes calldata signature) external nonReentrant {
        (address provider, uint256 amount) = _claim(v, signature);
        _token.safeTransfer(provider, amount);
    }

    /// @dev All or nothing: any bad voucher reverts the batch. Each provider is paid once, the sum
    /// of its sessions' increments, in order of first appearance.
    function claimBatch(Voucher[] calldata vs, bytes[] calldata signatures) external nonReentrant {
        uint256 n = vs.length;
        if (n != signatures.length) revert LengthMismatch(n, signatures.length);
        if (n == 0) revert EmptyBatch();
        address[] memory providers = new address[](n);
        uint256[] memory amounts = new uint256[](n);
        uint256 count = 0;
        for (uint256 i = 0; i < n; ++i) {
            (address provider, uint256 amount) = _claim(vs[i], signatures[i]);
            // Providers usually batch their own sessions, so the last entry matches most often.
            uint256 j = count;
            if (j != 0 && providers[j - 1] == provider) {
                j -= 1;
            } else {
                for (j = 0; j < count; ++j) {
                    if (providers[j] == provider) break;
                }
            }
            if (j == count) {
                providers[count] = provider;
                ++count;
            }
            amounts[j] += amount;
        }
        for (uint256 k = 0; k < count; ++k) {
            _token.safeTransfer(providers[k], amounts[k]);
        }
    }

    function closeSession(bytes32 sessionId) external nonReentrant {
        StoredSession storage st = _openSession(sessionId);
        if (msg.sender != st.provider) {
            if (msg.sender != payerOf(sessionId)) revert NotAllowedToClose(sessionId, msg.sender);
            uint256 allowedAt = uint256(st.expiresAt) + _closeGrace;
            if (block.timestamp < allowedAt) revert CloseTooEarly(sessionId, allowedAt);
        }
        uint256 claimed = st.claimed;
        uint256 refund = uint256(st.cap) - claimed;
        st.closed = true;
        _credit(payerOf(sessionId), refund);
        emit SessionClosed(sessionId, msg.sender, claimed, refund);
    }

    // ---------------------------------------------------------------- internals

    function _sessionId(address payer, uint64 nonce) private pure returns (bytes32) {
        return bytes32((uint256(uint160(payer)) << 96) | uint256(nonce));
    }

    function _openSession(bytes32 sessionId) private view returns (StoredSession storage st) {
        st = _sessions[sessionId];
        if (st.provider == address(0)) revert UnknownSession(sessionId);
        if (st.closed) revert SessionIsClosed(sessionId);
    }

    function _credit(address payer, uint256 amount) private {
        Account storage a = _accounts[payer];
        uint256 bal = uint256(a.balance) + amount;
        if (bal > type(uint192).max) revert AmountTooLarge(bal, type(uint192).max);
        a.balance = uint192(bal);
    }

    function _deposit(address payer, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        // Credit what arrived, not what was asked, so the books match the token balance even
        // for a token that takes a fee on transfer.
        uint256 before = _token.balanceOf(address(this));
        _token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = _token.balanceOf(address(this)) - before;
        if (received == 0) revert ZeroAmount();
        _credit(payer, received);
        emit Deposited(payer, msg.sender, received);
    }

    /// @dev Verifies one voucher and records it; returns whom to pay and how much. No transfer.
    function _claim(Voucher calldata v, bytes calldata signature) private returns (address provider, uint256 amount) {
        bytes32 sessionId = v.sessionId;
        StoredSession storage st = _sessions[sessionId];
        provider = st.provider;
        if (provider == address(0)) revert UnknownSession(sessionId);
        if (st.closed) revert SessionIsClosed(sessionId);
        uint256 claimed = st.claimed;
        uint256 cap = st.cap;
        uint256 cumulative = v.cumulativeAmount;
        if (cumulative <= claimed) revert NonIncreasingAmount(sessionId, claimed, cumulative);
        if (cumulative > cap) revert CapExceeded(sessionId, cap, cumulative);
        uint256 energy = v.cumulativeEnergyMj;
        uint256 claimedEnergy = st.claimedEnergyMj;
        if (energy < claimedEnergy) revert EnergyDecreased(sessionId, claimedEnergy, energy);
        if (energy > type(uint96).max) revert AmountTooLarge(energy, type(uint96).max);

        // tryRecover rejects high-s (malleable) signatures and anything but 65 bytes.
        (address signer, ECDSA.RecoverError err, bytes32 detail) = ECDSA.tryRecoverCalldata(hashVoucher(v), signature);
        if (err != ECDSA.RecoverError.NoError) revert InvalidSignature(sessionId, uint8(err), detail);
        if (signer != st.signer && signer != payerOf(sessionId)) revert UnauthorizedSigner(sessionId, signer);

        amount = cumulative - claimed;
        // Whole-slot writes: each of these two slots is rewritten with one SSTORE.
        st.claimed = uint128(cumulative);
        st.claimedEnergyMj = uint96(energy);
        emit Claimed(sessionId, provider, amount, cumulative, energy);
    }
}
