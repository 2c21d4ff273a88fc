// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KinesisEscrow} from "../../src/KinesisEscrow.sol";
import {IKinesisEscrow} from "../../src/IKinesisEscrow.sol";
import {KUSD} from "../../src/KUSD.sol";
import {TestBase} from "../utils/Vm.sol";

/// @dev The fuzzer's only entry point into the escrow. Every action is bounded into a valid
/// call (the invariant run sets fail_on_revert), so a revert here is a bug in the escrow.
contract EscrowHandler is TestBase {
    KinesisEscrow public immutable escrow;
    KUSD public immutable kusd;
    uint64 public immutable grace;

    uint256[3] internal payerPks = [uint256(0x1001), 0x1002, 0x1003];
    uint256[3] internal sessionPks = [uint256(0x2001), 0x2002, 0x2003];
    address[2] public providers;

    bytes32[] internal _sessions;
    uint256 public ghostPaid; // everything that left the escrow to providers
    uint256 public ghostDeposited;
    uint256 public ghostWithdrawn;
    mapping(bytes32 => uint256) public ghostEnergy;

    constructor(KinesisEscrow escrow_, KUSD kusd_, uint64 grace_) {
        escrow = escrow_;
        kusd = kusd_;
        grace = grace_;
        providers[0] = vm.addr(0x3001);
        providers[1] = vm.addr(0x3002);
    }

    function payerCount() external pure returns (uint256) {
        return 3;
    }

    function payer(uint256 i) public view returns (address) {
        return vm.addr(payerPks[i]);
    }

    function sessionCount() external view returns (uint256) {
        return _sessions.length;
    }

    function sessionAt(uint256 i) external view returns (bytes32) {
        return _sessions[i];
    }

    // ------------------------------------------------------------ actions

    function deposit(uint256 who, uint256 amount) external {
        address p = payer(who % 3);
        amount = bound(amount, 1, 1_000_000e6);
        kusd.mint(p, amount);
        vm.startPrank(p);
        kusd.approve(address(escrow), amount);
        escrow.deposit(amount);
        vm.stopPrank();
        ghostDeposited += amount;
    }

    function withdraw(uint256 who, uint256 amount) external {
        address p = payer(who % 3);
        uint256 free = escrow.balanceOf(p);
        if (free == 0) return;
        amount = bound(amount, 1, free);
        vm.prank(p);
        escrow.withdraw(amount);
        ghostWithdrawn += amount;
    }

    function open(uint256 who, uint256 prov, uint256 cap, uint256 duration, bool withKey) external {
        uint256 i = who % 3;
        address p = payer(i);
        uint256 free = escrow.balanceOf(p);
        if (free == 0) return;
        cap = bound(cap, 1, free);
        duration = bound(duration, 1, 30 days);
        vm.prank(p);
        bytes32 id = escrow.openSession(
            providers[prov % 2], withKey ? vm.addr(sessionPks[i]) : address(0), cap, uint64(block.timestamp + duration)
        );
        _sessions.push(id);
    }

    function topUp(uint256 s, uint256 amount, uint256 extend) external {
        (bool ok, bytes32 id, IKinesisEscrow.Session memory st) = _pickOpen(s);
        if (!ok) return;
        uint256 free = escrow.balanceOf(st.payer);
        amount = bound(amount, 0, free);
        uint256 base = st.expiresAt > block.timestamp ? st.expiresAt : block.timestamp;
        uint64 newExpiry = uint64(base + bound(extend, 1, 7 days));
        vm.prank(st.payer);
        escrow.topUp(id, amount, newExpiry);
    }

    function claim(uint256 s, uint256 increment, uint256 energyIncrement, bool byPayer) external {
        (bool ok, bytes32 id, IKinesisEscrow.Session memory st) = _pickOpen(s);
        if (!ok || st.claimed == st.cap) return;
        (IKinesisEscrow.Voucher memory v, bytes memory sig) = _next(id, st, increment, energyIncrement, byPayer);
        escrow.claim(v, sig);
        ghostPaid += v.cumulativeAmount - st.claimed;
    }

    function claimBatch(uint256 seed, uint256 n) external {
        n = bound(n, 1, 5);
        IKinesisEscrow.Voucher[] memory vs = new IKinesisEscrow.Voucher[](n);
        bytes[] memory sigs = new bytes[](n);
        uint256 count = 0;
        uint256 paid = 0;
        for (uint256 k = 0; k < n; ++k) {
            seed = uint256(keccak256(abi.encode(seed, k)));
            (bool ok, bytes32 id, IKinesisEscrow.Session memory st) = _pickOpen(seed);
            if (!ok || st.claimed == st.cap) continue;
            // Sessions already in this batch must continue from their batch total.
            for (uint256 j = 0; j < count; ++j) {
                if (vs[j].sessionId == id) {
                    st.claimed = vs[j].cumulativeAmount;
                    st.claimedEnergyMj = vs[j].cumulativeEnergyMj;
                }
            }
            if (st.claimed == st.cap) continue;
            (vs[count], sigs[count]) = _next(id, st, seed >> 8, seed >> 128, seed % 2 == 0);
            paid += vs[count].cumulativeAmount - st.claimed;
            ++count;
        }
        if (count == 0) return;
        assembly ("memory-safe") {
            mstore(vs, count)
            mstore(sigs, count)
        }
        escrow.claimBatch(vs, sigs);
        ghostPaid += paid;
    }

    function closeByProvider(uint256 s) external {
        (bool ok, bytes32 id, IKinesisEscrow.Session memory st) = _pickOpen(s);
        if (!ok) return;
        vm.prank(st.provider);
        escrow.closeSession(id);
    }

    function closeByPayer(uint256 s) external {
        (bool ok, bytes32 id, IKinesisEscrow.Session memory st) = _pickOpen(s);
        if (!ok) return;
        uint256 allowedAt = uint256(st.expiresAt) + grace;
        if (block.timestamp < allowedAt) vm.warp(allowedAt);
        vm.prank(st.payer);
        escrow.closeSession(id);
    }

    function warp(uint256 secondsAhead) external {
        vm.warp(block.timestamp + bound(secondsAhead, 1, 3 days));
    }

    // ------------------------------------------------------------ helpers

    function _pickOpen(uint256 s) internal view returns (bool, bytes32, IKinesisEscrow.Session memory st) {
        uint256 n = _sessions.length;
        if (n == 0) return (false, bytes32(0), st);
        bytes32 id = _sessions[s % n];
        st = escrow.getSession(id);
        return (!st.closed, id, st);
    }

    function _next(
        bytes32 id,
        IKinesisEscrow.Session memory st,
        uint256 increment,
        uint256 energyIncrement,
        bool byPayer
    ) internal view returns (IKinesisEscrow.Voucher memory v, bytes memory sig) {
        uint256 payerIndex = 3;
        for (uint256 i = 0; i < 3; ++i) if (payer(i) == st.payer) payerIndex = i;
        uint256 pk = byPayer || st.signer == address(0) ? payerPks[payerIndex] : sessionPks[payerIndex];
        v = IKinesisEscrow.Voucher({
            sessionId: id,
            cumulativeAmount: st.claimed + bound(increment, 1, st.cap - st.claimed),
            cumulativeEnergyMj: st.claimedEnergyMj + bound(energyIncrement, 0, 1e12)
        });
        (uint8 sv, bytes32 r, bytes32 s) = vm.sign(pk, escrow.hashVoucher(v));
        sig = abi.encodePacked(r, s, sv);
    }
}
