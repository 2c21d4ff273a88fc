// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {KinesisEscrow} from "../src/KinesisEscrow.sol";
import {IKinesisEscrow} from "../src/IKinesisEscrow.sol";
import {EscrowFixture} from "./utils/EscrowFixture.sol";
import {ReentrantToken} from "./mocks/ReentrantToken.sol";

/// Each attack from the issue, shown to fail.
contract AttacksTest is EscrowFixture {
    uint256 internal home;

    function test_attack_replayOnAnotherSession() public {
        bytes32 a = openSession(10e6);
        bytes32 b = openSession(10e6);
        IKinesisEscrow.Voucher memory v = voucher(a, 5e6, 1);
        bytes memory sig = sign(SESSION_PK, v);
        escrow.claim(v, sig);
        v.sessionId = b; // same key signs both sessions, but the id is part of the signed data
        vm.expectPartialRevert(IKinesisEscrow.UnauthorizedSigner.selector); // some unrelated address
        escrow.claim(v, sig);
        vm.assertEq(escrow.getSession(b).claimed, 0, "b untouched");
    }

    function test_attack_replayOnAnotherEscrow() public {
        KinesisEscrow other = new KinesisEscrow(IERC20(address(kusd)), GRACE);
        kusd.mint(payer, 10e6);
        vm.startPrank(payer);
        kusd.approve(address(other), 10e6);
        other.deposit(10e6);
        bytes32 idOther = other.openSession(provider, sessionKey, 10e6, uint64(block.timestamp + 1 days));
        vm.stopPrank();
        bytes32 id = openSession(10e6);
        vm.assertEq(id, idOther, "same id on both escrows: only the domain tells them apart");

        IKinesisEscrow.Voucher memory v = voucher(id, 5e6, 1);
        bytes memory sig = sign(SESSION_PK, v);
        vm.expectPartialRevert(IKinesisEscrow.UnauthorizedSigner.selector);
        other.claim(v, sig);
        escrow.claim(v, sig); // valid where it was meant
        vm.assertEq(other.getSession(idOther).claimed, 0, "other escrow untouched");
    }

    function test_attack_replayOnAnotherChain() public {
        bytes32 id = openSession(10e6);
        IKinesisEscrow.Voucher memory v = voucher(id, 5e6, 1);
        bytes memory sigHere = sign(SESSION_PK, v);
        bytes memory sigElsewhere = signFor(SESSION_PK, v, address(escrow), block.chainid + 1);
        vm.expectPartialRevert(IKinesisEscrow.UnauthorizedSigner.selector);
        escrow.claim(v, sigElsewhere);

        // Kept in storage: via-IR may re-read block.chainid instead of keeping a local copy.
        home = block.chainid;
        vm.chainId(home + 1); // a fork of this chain: the cached domain separator must not be used
        vm.assertEq(escrow.domainSeparator(), domainSeparator(address(escrow), home + 1), "domain follows chainid");
        vm.expectPartialRevert(IKinesisEscrow.UnauthorizedSigner.selector);
        escrow.claim(v, sigHere);
        vm.chainId(home);
        escrow.claim(v, sigHere);
    }

    function test_attack_malleableHighS() public {
        bytes32 id = openSession(10e6);
        IKinesisEscrow.Voucher memory v = voucher(id, 5e6, 1);
        (uint8 sv, bytes32 r, bytes32 s) = vm.sign(SESSION_PK, voucherDigest(address(escrow), block.chainid, v));
        // (r, n - s, v ^ 1) is the same point's other valid signature under plain ecrecover.
        bytes32 highS = bytes32(SECP256K1_N - uint256(s));
        bytes memory flipped = abi.encodePacked(r, highS, sv == 27 ? uint8(28) : uint8(27));
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.InvalidSignature.selector, id, uint8(3), highS));
        escrow.claim(v, flipped);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.InvalidSignature.selector, id, uint8(2), bytes32(uint256(64))));
        escrow.claim(v, abi.encodePacked(r, s));
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.InvalidSignature.selector, id, uint8(1), bytes32(0)));
        escrow.claim(v, abi.encodePacked(bytes32(0), bytes32(0), uint8(27)));
    }

    function test_attack_signedByProviderOrStranger() public {
        bytes32 id = openSession(10e6);
        IKinesisEscrow.Voucher memory v = voucher(id, 5e6, 1);
        bytes memory byProvider = sign(PROVIDER_PK, v);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.UnauthorizedSigner.selector, id, provider));
        escrow.claim(v, byProvider);
        bytes memory byStranger = sign(STRANGER_PK, v);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.UnauthorizedSigner.selector, id, stranger));
        escrow.claim(v, byStranger);
    }

    function testFuzz_attack_anyOtherKeyFails(uint256 pk, uint256 amount) public {
        pk = bound(pk, 1, SECP256K1_N - 1);
        vm.assume(pk != PAYER_PK && pk != SESSION_PK);
        bytes32 id = openSession(10e6);
        IKinesisEscrow.Voucher memory v = voucher(id, bound(amount, 1, 10e6), 1);
        bytes memory sig = sign(pk, v);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.UnauthorizedSigner.selector, id, vm.addr(pk)));
        escrow.claim(v, sig);
    }

    function test_attack_lowerOrEqualCumulative() public {
        bytes32 id = openSession(10e6);
        IKinesisEscrow.Voucher memory v5 = voucher(id, 5e6, 5);
        bytes memory sig5 = sign(SESSION_PK, v5);
        escrow.claim(v5, sig5);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.NonIncreasingAmount.selector, id, 5e6, 5e6));
        escrow.claim(v5, sig5); // plain replay
        IKinesisEscrow.Voucher memory v4 = voucher(id, 4e6, 5);
        bytes memory sig4 = sign(SESSION_PK, v4);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.NonIncreasingAmount.selector, id, 5e6, 4e6));
        escrow.claim(v4, sig4);
        vm.assertEq(kusd.balanceOf(provider), 5e6, "paid once");
    }

    function test_attack_claimAfterClose() public {
        bytes32 id = openSession(10e6);
        IKinesisEscrow.Voucher memory v = voucher(id, 5e6, 5);
        bytes memory sig = sign(SESSION_PK, v);
        vm.warp(block.timestamp + 1 days + GRACE);
        vm.prank(payer);
        escrow.closeSession(id);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.SessionIsClosed.selector, id));
        escrow.claim(v, sig);
        IKinesisEscrow.Voucher[] memory vs = new IKinesisEscrow.Voucher[](1);
        vs[0] = v;
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = sig;
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.SessionIsClosed.selector, id));
        escrow.claimBatch(vs, sigs);
        vm.assertEq(escrow.balanceOf(payer), 1_000_000e6, "payer kept everything");
    }

    /// A token that calls back into the escrow from inside its transfer gets nothing.
    function test_attack_reentrancyThroughMaliciousToken() public {
        ReentrantToken evil = new ReentrantToken();
        KinesisEscrow e = new KinesisEscrow(IERC20(address(evil)), GRACE);
        evil.mint(payer, 100e6);
        vm.startPrank(payer);
        evil.approve(address(e), 100e6);
        e.deposit(100e6);
        bytes32 id = e.openSession(provider, sessionKey, 10e6, uint64(block.timestamp + 1 days));
        vm.stopPrank();

        IKinesisEscrow.Voucher memory v1 = voucher(id, 3e6, 1);
        IKinesisEscrow.Voucher memory v2 = voucher(id, 9e6, 2);
        bytes memory sig1 = signFor(SESSION_PK, v1, address(e), block.chainid);
        bytes memory sig2 = signFor(SESSION_PK, v2, address(e), block.chainid);
        bytes memory expected = abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector);

        // 1. re-enter claim with the same voucher (double spend) and with a higher one
        evil.arm(address(e), abi.encodeCall(KinesisEscrow.claim, (v1, sig1)));
        e.claim(v1, sig1);
        vm.assertTrue(evil.attempted(), "token called back");
        vm.assertFalse(evil.reentrySucceeded(), "double claim blocked");
        vm.assertEq(keccak256(evil.reentryRevertData()), keccak256(expected), "by the guard");
        evil.arm(address(e), abi.encodeCall(KinesisEscrow.claim, (v2, sig2)));
        vm.prank(payer);
        e.withdraw(1e6); // a transfer out of the escrow that tries to slip a claim in
        vm.assertFalse(evil.reentrySucceeded(), "nested claim blocked");
        vm.assertEq(evil.balanceOf(provider), 3e6, "provider paid once");
        vm.assertEq(e.getSession(id).claimed, 3e6, "books unchanged by the attempt");

        // 2. re-enter withdraw from inside a claim payout: the token itself holds a balance
        evil.mint(address(evil), 5e6);
        vm.startPrank(address(evil));
        evil.approve(address(e), 5e6);
        e.deposit(5e6);
        vm.stopPrank();
        evil.arm(address(e), abi.encodeCall(KinesisEscrow.withdraw, (5e6)));
        e.claim(v2, sig2);
        vm.assertFalse(evil.reentrySucceeded(), "withdraw during claim blocked");
        vm.assertEq(e.balanceOf(address(evil)), 5e6, "attacker balance intact, not doubled");
        vm.assertEq(
            evil.balanceOf(address(e)),
            e.balanceOf(payer) + e.balanceOf(address(evil)) + (10e6 - 9e6),
            "escrow holds free balances plus the open remainder"
        );
    }
}
