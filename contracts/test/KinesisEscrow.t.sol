// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {KinesisEscrow} from "../src/KinesisEscrow.sol";
import {IKinesisEscrow} from "../src/IKinesisEscrow.sol";
import {EscrowFixture} from "./utils/EscrowFixture.sol";
import {FeeOnTransferToken} from "./mocks/FeeOnTransferToken.sol";

/// Balances, opening, topping up and closing sessions.
contract KinesisEscrowTest is EscrowFixture {
    function test_constructor_setsTokenAndGrace() public view {
        vm.assertEq(address(escrow.token()), address(kusd), "token");
        vm.assertEq(uint256(escrow.closeGrace()), GRACE, "grace");
        vm.assertEq(escrow.domainSeparator(), domainSeparator(address(escrow), block.chainid), "domain");
    }

    function test_constructor_rejectsZeroToken() public {
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.InvalidToken.selector, address(0)));
        new KinesisEscrow(IERC20(address(0)), GRACE);
    }

    function test_deposit_creditsAndEmits() public {
        kusd.mint(stranger, 50e6);
        vm.startPrank(stranger);
        kusd.approve(address(escrow), 50e6);
        vm.expectEmit(address(escrow));
        emit IKinesisEscrow.Deposited(stranger, stranger, 50e6);
        escrow.deposit(50e6);
        vm.stopPrank();
        vm.assertEq(escrow.balanceOf(stranger), 50e6, "free balance");
        vm.assertEq(kusd.balanceOf(stranger), 0, "tokens moved");
    }

    function test_depositFor_creditsThePayer() public {
        kusd.mint(stranger, 7e6);
        vm.startPrank(stranger);
        kusd.approve(address(escrow), 7e6);
        vm.expectEmit(address(escrow));
        emit IKinesisEscrow.Deposited(provider, stranger, 7e6);
        escrow.depositFor(provider, 7e6);
        vm.stopPrank();
        vm.assertEq(escrow.balanceOf(provider), 7e6, "payer credited");
        vm.assertEq(escrow.balanceOf(stranger), 0, "sender not credited");
    }

    function test_deposit_rejectsZeroAndZeroPayer() public {
        vm.expectRevert(IKinesisEscrow.ZeroAmount.selector);
        escrow.deposit(0);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.InvalidPayer.selector, address(0)));
        escrow.depositFor(address(0), 1);
    }

    function test_deposit_creditsWhatArrives() public {
        FeeOnTransferToken fot = new FeeOnTransferToken();
        KinesisEscrow e = new KinesisEscrow(IERC20(address(fot)), GRACE);
        fot.mint(stranger, 1000);
        vm.startPrank(stranger);
        fot.approve(address(e), 1000);
        e.deposit(1000); // 1% fee
        vm.stopPrank();
        vm.assertEq(e.balanceOf(stranger), 990, "credited the amount received");
        vm.assertEq(fot.balanceOf(address(e)), 990, "books match holdings");
    }

    function testFuzz_withdraw_freeBalanceOnly(uint256 cap, uint256 amount) public {
        cap = bound(cap, 1, 1_000_000e6);
        openSession(cap);
        uint256 free = 1_000_000e6 - cap;
        vm.assertEq(escrow.balanceOf(payer), free, "cap locked");
        amount = bound(amount, 1, 2_000_000e6);
        vm.prank(payer);
        if (amount > free) {
            vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.InsufficientBalance.selector, payer, free, amount));
            escrow.withdraw(amount);
        } else {
            vm.expectEmit(address(escrow));
            emit IKinesisEscrow.Withdrawn(payer, amount);
            escrow.withdraw(amount);
            vm.assertEq(kusd.balanceOf(payer), amount, "paid out");
            vm.assertEq(escrow.balanceOf(payer), free - amount, "debited");
        }
    }

    function test_withdraw_rejectsZero() public {
        vm.prank(payer);
        vm.expectRevert(IKinesisEscrow.ZeroAmount.selector);
        escrow.withdraw(0);
    }

    function test_openSession_locksCapAndNeverRepeatsIds() public {
        bytes32 expected = escrow.nextSessionId(payer);
        vm.expectEmit(address(escrow));
        emit IKinesisEscrow.SessionOpened(expected, payer, provider, sessionKey, 100e6, uint64(block.timestamp + 1 days));
        bytes32 a = openSession(100e6);
        bytes32 b = openSession(100e6);
        vm.assertEq(a, expected, "predicted id");
        vm.assertTrue(a != b, "distinct ids");
        vm.assertEq(escrow.payerOf(a), payer, "payer in id");
        vm.assertEq(escrow.balanceOf(payer), 1_000_000e6 - 200e6, "caps locked");
        IKinesisEscrow.Session memory s = escrow.getSession(a);
        vm.assertEq(s.payer, payer, "payer");
        vm.assertEq(s.provider, provider, "provider");
        vm.assertEq(s.signer, sessionKey, "signer");
        vm.assertEq(s.cap, 100e6, "cap");
        vm.assertEq(s.claimed, 0, "claimed");
        vm.assertEq(s.claimedEnergyMj, 0, "energy");
        vm.assertEq(uint256(s.expiresAt), block.timestamp + 1 days, "expiry");
        vm.assertFalse(s.closed, "open");
        // Another payer's ids live in another range.
        fund(stranger, 10e6);
        vm.prank(stranger);
        bytes32 c = escrow.openSession(provider, address(0), 1e6, uint64(block.timestamp + 60));
        vm.assertTrue(c != a && c != b, "payers never collide");
    }

    function test_openSession_validatesArguments() public {
        uint64 exp = uint64(block.timestamp + 1 days);
        vm.startPrank(payer);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.InvalidProvider.selector, address(0)));
        escrow.openSession(address(0), sessionKey, 1, exp);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.InvalidSigner.selector, provider));
        escrow.openSession(provider, provider, 1, exp);
        vm.expectRevert(IKinesisEscrow.ZeroAmount.selector);
        escrow.openSession(provider, sessionKey, 0, exp);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.ExpiryInPast.selector, uint64(block.timestamp), block.timestamp));
        escrow.openSession(provider, sessionKey, 1, uint64(block.timestamp));
        vm.expectRevert(
            abi.encodeWithSelector(IKinesisEscrow.InsufficientBalance.selector, payer, 1_000_000e6, 1_000_000e6 + 1)
        );
        escrow.openSession(provider, sessionKey, 1_000_000e6 + 1, exp);
        vm.expectRevert(
            abi.encodeWithSelector(IKinesisEscrow.AmountTooLarge.selector, uint256(1) << 128, type(uint128).max)
        );
        escrow.openSession(provider, sessionKey, uint256(1) << 128, exp);
        vm.stopPrank();
    }

    function test_getSession_unknownIsZero() public view {
        IKinesisEscrow.Session memory s = escrow.getSession(bytes32(uint256(123)));
        vm.assertEq(s.payer, address(0), "payer");
        vm.assertEq(s.provider, address(0), "provider");
    }

    function test_topUp_addsCapAndExtends() public {
        bytes32 id = openSession(10e6);
        uint64 later = uint64(block.timestamp + 2 days);
        vm.prank(payer);
        vm.expectEmit(address(escrow));
        emit IKinesisEscrow.SessionToppedUp(id, 5e6, 15e6, later);
        escrow.topUp(id, 5e6, later);
        IKinesisEscrow.Session memory s = escrow.getSession(id);
        vm.assertEq(s.cap, 15e6, "cap");
        vm.assertEq(uint256(s.expiresAt), later, "expiry");
        vm.assertEq(escrow.balanceOf(payer), 1_000_000e6 - 15e6, "debited");
    }

    function test_topUp_rules() public {
        bytes32 id = openSession(10e6);
        uint64 exp = uint64(block.timestamp + 1 days);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.NotPayer.selector, id, stranger));
        escrow.topUp(id, 1, exp);
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.ExpiryShortened.selector, id, exp, exp - 1));
        escrow.topUp(id, 1, exp - 1);
        vm.prank(payer);
        vm.expectRevert(
            abi.encodeWithSelector(IKinesisEscrow.InsufficientBalance.selector, payer, 1_000_000e6 - 10e6, 1_000_000e6)
        );
        escrow.topUp(id, 1_000_000e6, exp);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.UnknownSession.selector, bytes32(uint256(7))));
        escrow.topUp(bytes32(uint256(7)), 1, exp);
        vm.prank(provider);
        escrow.closeSession(id);
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.SessionIsClosed.selector, id));
        escrow.topUp(id, 1, exp);
    }

    function test_close_byProviderAnytimeRefundsRest() public {
        bytes32 id = openSession(10e6);
        IKinesisEscrow.Voucher memory v = voucher(id, 4e6, 1000);
        escrow.claim(v, sign(SESSION_PK, v));
        vm.prank(provider);
        vm.expectEmit(address(escrow));
        emit IKinesisEscrow.SessionClosed(id, provider, 4e6, 6e6);
        escrow.closeSession(id);
        vm.assertTrue(escrow.getSession(id).closed, "closed");
        vm.assertEq(escrow.balanceOf(payer), 1_000_000e6 - 4e6, "refunded");
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.SessionIsClosed.selector, id));
        escrow.closeSession(id);
    }

    function test_close_byPayerOnlyAfterGrace() public {
        bytes32 id = openSession(10e6);
        uint256 allowedAt = block.timestamp + 1 days + GRACE;
        vm.warp(allowedAt - 1);
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.CloseTooEarly.selector, id, allowedAt));
        escrow.closeSession(id);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.NotAllowedToClose.selector, id, stranger));
        escrow.closeSession(id);
        vm.warp(allowedAt);
        vm.prank(payer);
        escrow.closeSession(id);
        vm.assertEq(escrow.balanceOf(payer), 1_000_000e6, "all back");
        vm.prank(payer);
        escrow.withdraw(1_000_000e6);
        vm.assertEq(kusd.balanceOf(payer), 1_000_000e6, "withdrawn");
    }

    function test_close_unknownSession() public {
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.UnknownSession.selector, bytes32(0)));
        escrow.closeSession(bytes32(0));
    }
}
