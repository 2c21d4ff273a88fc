// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IKinesisEscrow} from "../../src/IKinesisEscrow.sol";
import {EscrowFixture} from "../utils/EscrowFixture.sol";

/// @dev Gas benchmark cases for contracts/script/gas-bench.ts, which runs each test alone with
/// `forge test --gas-report --isolate --match-test <name>`: --isolate makes every top-level call
/// a transaction of its own (21,000 intrinsic gas, calldata and cold storage included). A forge
/// gas report also counts the calls made in setUp, so each case's setUp never calls the function
/// its test measures (the script checks that the function was called exactly once). The provider
/// already holds some KUSD, as the issue's targets assume.
abstract contract GasBase is EscrowFixture {
    uint256 internal constant BATCH = 10;

    function setUp() public virtual override {
        super.setUp();
        kusd.mint(provider, 1e6);
        kusd.mint(payer, 10e6);
    }

    function voucherAndSig(bytes32 id, uint256 amount)
        internal
        view
        returns (IKinesisEscrow.Voucher memory v, bytes memory sig)
    {
        v = voucher(id, amount, amount * 7);
        sig = sign(SESSION_PK, v);
    }

    function batchOf(bytes32[] memory ids, uint256 amount)
        internal
        view
        returns (IKinesisEscrow.Voucher[] memory vs, bytes[] memory sigs)
    {
        vs = new IKinesisEscrow.Voucher[](ids.length);
        sigs = new bytes[](ids.length);
        for (uint256 i = 0; i < ids.length; ++i) (vs[i], sigs[i]) = voucherAndSig(ids[i], amount);
    }

    function openMany(uint256 n) internal returns (bytes32[] memory ids) {
        ids = new bytes32[](n);
        for (uint256 i = 0; i < n; ++i) ids[i] = openSession(100e6);
    }
}

contract GasOpenSession is GasBase {
    function test_gas_openSession() public {
        vm.prank(payer);
        escrow.openSession(provider, sessionKey, 100e6, uint64(block.timestamp + 1 days));
    }
}

contract GasClaimFirst is GasBase {
    bytes32 internal id;

    function setUp() public override {
        super.setUp();
        id = openSession(100e6);
    }

    function test_gas_claimFirst() public {
        (IKinesisEscrow.Voucher memory v, bytes memory sig) = voucherAndSig(id, 2e6);
        escrow.claim(v, sig);
    }
}

contract GasClaimUpdate is GasBase {
    bytes32 internal id;

    function setUp() public override {
        super.setUp();
        id = openSession(100e6);
        bytes32[] memory ids = new bytes32[](1);
        ids[0] = id;
        (IKinesisEscrow.Voucher[] memory vs, bytes[] memory sigs) = batchOf(ids, 1e6);
        escrow.claimBatch(vs, sigs); // the first claim, through the other entry point
    }

    function test_gas_claimUpdate() public {
        (IKinesisEscrow.Voucher memory v, bytes memory sig) = voucherAndSig(id, 2e6);
        escrow.claim(v, sig);
    }
}

contract GasClaimBatch10First is GasBase {
    bytes32[] internal ids;

    function setUp() public override {
        super.setUp();
        ids = openMany(BATCH);
    }

    function test_gas_claimBatch10First() public {
        (IKinesisEscrow.Voucher[] memory vs, bytes[] memory sigs) = batchOf(ids, 2e6);
        escrow.claimBatch(vs, sigs);
    }
}

contract GasClaimBatch10Update is GasBase {
    bytes32[] internal ids;

    function setUp() public override {
        super.setUp();
        ids = openMany(BATCH);
        for (uint256 i = 0; i < BATCH; ++i) {
            (IKinesisEscrow.Voucher memory v, bytes memory sig) = voucherAndSig(ids[i], 1e6);
            escrow.claim(v, sig);
        }
    }

    function test_gas_claimBatch10Update() public {
        (IKinesisEscrow.Voucher[] memory vs, bytes[] memory sigs) = batchOf(ids, 2e6);
        escrow.claimBatch(vs, sigs);
    }
}

contract GasCloseSession is GasBase {
    bytes32 internal id;

    function setUp() public override {
        super.setUp();
        id = openSession(100e6);
        (IKinesisEscrow.Voucher memory v, bytes memory sig) = voucherAndSig(id, 1e6);
        escrow.claim(v, sig);
    }

    function test_gas_closeSessionByProvider() public {
        vm.prank(provider);
        escrow.closeSession(id);
    }
}

contract GasBalances is GasBase {
    function test_gas_deposit() public {
        vm.prank(payer);
        escrow.deposit(1e6);
    }

    function test_gas_withdraw() public {
        vm.prank(payer);
        escrow.withdraw(1e6);
    }

    function test_gas_topUp() public {
        bytes32 id = escrow.nextSessionId(payer);
        vm.prank(payer);
        escrow.openSession(provider, sessionKey, 100e6, uint64(block.timestamp + 1 days));
        vm.prank(payer);
        escrow.topUp(id, 10e6, uint64(block.timestamp + 2 days));
    }
}
