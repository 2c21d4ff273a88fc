// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {KinesisEscrow} from "../../src/KinesisEscrow.sol";
import {IKinesisEscrow} from "../../src/IKinesisEscrow.sol";
import {KUSD} from "../../src/KUSD.sol";
import {TestBase} from "../utils/Vm.sol";
import {EscrowHandler} from "./EscrowHandler.sol";

/// The issue's three invariants, checked after every step of random action sequences
/// (deposit, withdraw, open, top up, claim, batch claim, close by either side, time passing).
contract EscrowInvariantTest is TestBase {
    KUSD internal kusd;
    KinesisEscrow internal escrow;
    EscrowHandler internal handler;

    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    function setUp() public {
        vm.warp(1_700_000_000);
        kusd = new KUSD(address(this));
        escrow = new KinesisEscrow(IERC20(address(kusd)), 1 hours);
        handler = new EscrowHandler(escrow, kusd, 1 hours);
        kusd.transferOwnership(address(handler));
    }

    /// forge reads these to decide what the fuzzer calls.
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory s) {
        bytes4[] memory sel = new bytes4[](9);
        sel[0] = EscrowHandler.deposit.selector;
        sel[1] = EscrowHandler.withdraw.selector;
        sel[2] = EscrowHandler.open.selector;
        sel[3] = EscrowHandler.topUp.selector;
        sel[4] = EscrowHandler.claim.selector;
        sel[5] = EscrowHandler.claimBatch.selector;
        sel[6] = EscrowHandler.closeByProvider.selector;
        sel[7] = EscrowHandler.closeByPayer.selector;
        sel[8] = EscrowHandler.warp.selector;
        s = new FuzzSelector[](1);
        s[0] = FuzzSelector({addr: address(handler), selectors: sel});
    }

    /// token balance == free balances + (cap - claimed) of open sessions
    function invariant_solvency() public view {
        uint256 books = 0;
        for (uint256 i = 0; i < handler.payerCount(); ++i) books += escrow.balanceOf(handler.payer(i));
        for (uint256 i = 0; i < handler.sessionCount(); ++i) {
            IKinesisEscrow.Session memory s = escrow.getSession(handler.sessionAt(i));
            if (!s.closed) books += s.cap - s.claimed;
        }
        uint256 held = kusd.balanceOf(address(escrow));
        vm.assertEq(held, books, "escrow holds exactly its books");
        vm.assertEq(held, handler.ghostDeposited() - handler.ghostWithdrawn() - handler.ghostPaid(), "conservation");
    }

    /// providers receive exactly what their sessions claimed, and no session more than its cap
    function invariant_providerNeverPaidBeyondCap() public view {
        uint256 claimedTotal = 0;
        uint256[2] memory perProvider;
        for (uint256 i = 0; i < handler.sessionCount(); ++i) {
            IKinesisEscrow.Session memory s = escrow.getSession(handler.sessionAt(i));
            vm.assertLe(s.claimed, s.cap, "claimed within cap");
            claimedTotal += s.claimed;
            perProvider[s.provider == handler.providers(0) ? 0 : 1] += s.claimed;
        }
        vm.assertEq(kusd.balanceOf(handler.providers(0)), perProvider[0], "provider 0 got its sessions' claims");
        vm.assertEq(kusd.balanceOf(handler.providers(1)), perProvider[1], "provider 1 got its sessions' claims");
        vm.assertEq(claimedTotal, handler.ghostPaid(), "every payout is a recorded claim");
    }

    /// once expiresAt + closeGrace has passed, a payer recovers every unclaimed token
    function invariant_payerCanAlwaysRecover() public {
        uint256 n = handler.sessionCount();
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = handler.sessionAt(i);
            IKinesisEscrow.Session memory s = escrow.getSession(id);
            if (s.closed) continue;
            uint256 snap = vm.snapshotState();
            uint256 allowedAt = uint256(s.expiresAt) + escrow.closeGrace();
            if (vm.getBlockTimestamp() < allowedAt) vm.warp(allowedAt);
            uint256 free = escrow.balanceOf(s.payer);
            uint256 walletBefore = kusd.balanceOf(s.payer);
            vm.prank(s.payer);
            escrow.closeSession(id);
            uint256 expected = free + s.cap - s.claimed;
            vm.assertEq(escrow.balanceOf(s.payer), expected, "refund credited");
            if (expected > 0) {
                vm.prank(s.payer);
                escrow.withdraw(expected);
            }
            vm.assertEq(kusd.balanceOf(s.payer) - walletBefore, expected, "and withdrawn");
            vm.revertToState(snap);
        }
    }
}
