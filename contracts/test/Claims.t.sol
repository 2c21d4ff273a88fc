// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IKinesisEscrow} from "../src/IKinesisEscrow.sol";
import {EscrowFixture} from "./utils/EscrowFixture.sol";

/// Claiming single vouchers and batches.
contract ClaimsTest is EscrowFixture {
    function test_claim_paysTheIncrementToTheProvider() public {
        bytes32 id = openSession(10e6);
        IKinesisEscrow.Voucher memory v1 = voucher(id, 3e6, 500);
        vm.expectEmit(address(escrow));
        emit IKinesisEscrow.Claimed(id, provider, 3e6, 3e6, 500);
        vm.prank(stranger); // anyone may submit
        escrow.claim(v1, sign(SESSION_PK, v1));
        vm.assertEq(kusd.balanceOf(provider), 3e6, "first");

        IKinesisEscrow.Voucher memory v2 = voucher(id, 5e6, 900);
        escrow.claim(v2, sign(PAYER_PK, v2)); // the payer may sign too
        vm.assertEq(kusd.balanceOf(provider), 5e6, "second pays only the difference");
        IKinesisEscrow.Session memory s = escrow.getSession(id);
        vm.assertEq(s.claimed, 5e6, "claimed");
        vm.assertEq(s.claimedEnergyMj, 900, "energy");
    }

    function test_claim_uptoCapOnly() public {
        bytes32 id = openSession(10e6);
        IKinesisEscrow.Voucher memory v = voucher(id, 10e6 + 1, 1);
        bytes memory sig = sign(SESSION_PK, v);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.CapExceeded.selector, id, 10e6, 10e6 + 1));
        escrow.claim(v, sig);
        v = voucher(id, 10e6, 1);
        escrow.claim(v, sign(SESSION_PK, v));
        vm.assertEq(kusd.balanceOf(provider), 10e6, "exactly the cap");
    }

    function test_claim_energyMustNotDecreaseAndFit96Bits() public {
        bytes32 id = openSession(10e6);
        IKinesisEscrow.Voucher memory v = voucher(id, 1e6, 100);
        escrow.claim(v, sign(SESSION_PK, v));
        v = voucher(id, 2e6, 99);
        bytes memory sig = sign(SESSION_PK, v);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.EnergyDecreased.selector, id, 100, 99));
        escrow.claim(v, sig);
        v = voucher(id, 2e6, uint256(1) << 96);
        sig = sign(SESSION_PK, v);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.AmountTooLarge.selector, uint256(1) << 96, type(uint96).max));
        escrow.claim(v, sig);
    }

    function test_claim_payerOnlySession() public {
        vm.prank(payer);
        bytes32 id = escrow.openSession(provider, address(0), 10e6, uint64(block.timestamp + 1 hours));
        IKinesisEscrow.Voucher memory v = voucher(id, 1e6, 1);
        bytes memory sig = sign(SESSION_PK, v);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.UnauthorizedSigner.selector, id, sessionKey));
        escrow.claim(v, sig);
        escrow.claim(v, sign(PAYER_PK, v));
        vm.assertEq(kusd.balanceOf(provider), 1e6, "paid");
    }

    function test_claim_unknownSession() public {
        IKinesisEscrow.Voucher memory v = voucher(bytes32(uint256(1)), 1, 1);
        bytes memory sig = sign(PAYER_PK, v);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.UnknownSession.selector, bytes32(uint256(1))));
        escrow.claim(v, sig);
    }

    /// Whatever sequence of increasing vouchers is claimed, the provider ends with the last
    /// cumulative amount and the payer gets exactly the rest back.
    function testFuzz_claimSequence(uint256 seed, uint8 steps, uint256 cap) public {
        cap = bound(cap, 1, 1_000_000e6);
        bytes32 id = openSession(cap);
        uint256 cumulative = 0;
        uint256 n = bound(steps, 1, 12);
        for (uint256 i = 0; i < n && cumulative < cap; ++i) {
            seed = uint256(keccak256(abi.encode(seed, i)));
            cumulative += bound(seed, 1, cap - cumulative);
            IKinesisEscrow.Voucher memory v = voucher(id, cumulative, cumulative * 3);
            escrow.claim(v, sign(seed % 2 == 0 ? SESSION_PK : PAYER_PK, v));
            vm.assertEq(kusd.balanceOf(provider), cumulative, "provider holds the cumulative");
        }
        vm.prank(provider);
        escrow.closeSession(id);
        vm.assertEq(escrow.balanceOf(payer), 1_000_000e6 - cumulative, "payer gets the rest");
        vm.assertEq(kusd.balanceOf(address(escrow)), escrow.balanceOf(payer), "escrow holds free balance");
    }

    function test_claimBatch_paysEachProviderOnce() public {
        address provider2 = vm.addr(0xC0C);
        bytes32 a = openSession(10e6);
        bytes32 b = openSession(10e6);
        vm.prank(payer);
        bytes32 c = escrow.openSession(provider2, sessionKey, 10e6, uint64(block.timestamp + 1 days));
        IKinesisEscrow.Voucher[] memory vs = new IKinesisEscrow.Voucher[](4);
        vs[0] = voucher(a, 1e6, 10);
        vs[1] = voucher(c, 2e6, 20);
        vs[2] = voucher(b, 3e6, 30);
        vs[3] = voucher(a, 4e6, 40); // same session twice: the second pays the difference
        bytes[] memory sigs = new bytes[](4);
        for (uint256 i = 0; i < 4; ++i) sigs[i] = sign(SESSION_PK, vs[i]);

        // Count token transfers out of the escrow: one per distinct provider.
        vm.expectEmit(address(kusd));
        emit Transfer(address(escrow), provider, 7e6);
        vm.expectEmit(address(kusd));
        emit Transfer(address(escrow), provider2, 2e6);
        escrow.claimBatch(vs, sigs);
        vm.assertEq(kusd.balanceOf(provider), 7e6, "provider: 4 + 3");
        vm.assertEq(kusd.balanceOf(provider2), 2e6, "provider2");
        vm.assertEq(escrow.getSession(a).claimed, 4e6, "a");
    }

    event Transfer(address indexed from, address indexed to, uint256 value);

    function test_claimBatch_allOrNothing() public {
        bytes32 a = openSession(10e6);
        bytes32 b = openSession(10e6);
        IKinesisEscrow.Voucher[] memory vs = new IKinesisEscrow.Voucher[](2);
        vs[0] = voucher(a, 1e6, 1);
        vs[1] = voucher(b, 11e6, 1); // over the cap
        bytes[] memory sigs = new bytes[](2);
        sigs[0] = sign(SESSION_PK, vs[0]);
        sigs[1] = sign(SESSION_PK, vs[1]);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.CapExceeded.selector, b, 10e6, 11e6));
        escrow.claimBatch(vs, sigs);
        vm.assertEq(escrow.getSession(a).claimed, 0, "first voucher not applied");
        vm.assertEq(kusd.balanceOf(provider), 0, "nothing paid");
    }

    function test_claimBatch_shapeErrors() public {
        IKinesisEscrow.Voucher[] memory vs = new IKinesisEscrow.Voucher[](1);
        bytes[] memory sigs = new bytes[](0);
        vm.expectRevert(abi.encodeWithSelector(IKinesisEscrow.LengthMismatch.selector, 1, 0));
        escrow.claimBatch(vs, sigs);
        vm.expectRevert(IKinesisEscrow.EmptyBatch.selector);
        escrow.claimBatch(new IKinesisEscrow.Voucher[](0), sigs);
    }
}
