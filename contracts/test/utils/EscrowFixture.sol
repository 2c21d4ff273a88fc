// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {KinesisEscrow} from "../../src/KinesisEscrow.sol";
import {IKinesisEscrow} from "../../src/IKinesisEscrow.sol";
import {KUSD} from "../../src/KUSD.sol";
import {TestBase} from "./Vm.sol";

/// @dev Shared set-up: a KUSD token, an escrow with a one-hour close grace, a funded payer with
/// a session key, and a provider. Voucher digests are computed here from the EIP-712 spec
/// (https://eips.ethereum.org/EIPS/eip-712#specification), independently of the contract.
abstract contract EscrowFixture is TestBase {
    uint64 internal constant GRACE = 1 hours;
    uint256 internal constant PAYER_PK = 0xA11CE;
    uint256 internal constant SESSION_PK = 0x5E55;
    uint256 internal constant PROVIDER_PK = 0xB0B;
    uint256 internal constant STRANGER_PK = 0xBAD;
    bytes32 internal constant VOUCHER_TYPEHASH =
        keccak256("Voucher(bytes32 sessionId,uint256 cumulativeAmount,uint256 cumulativeEnergyMj)");
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    KUSD internal kusd;
    KinesisEscrow internal escrow;
    address internal payer;
    address internal sessionKey;
    address internal provider;
    address internal stranger;

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        kusd = new KUSD(address(this));
        escrow = new KinesisEscrow(IERC20(address(kusd)), GRACE);
        payer = vm.addr(PAYER_PK);
        sessionKey = vm.addr(SESSION_PK);
        provider = vm.addr(PROVIDER_PK);
        stranger = vm.addr(STRANGER_PK);
        vm.label(payer, "payer");
        vm.label(sessionKey, "sessionKey");
        vm.label(provider, "provider");
        vm.label(stranger, "stranger");
        fund(payer, 1_000_000e6);
    }

    /// Mints `amount` to `who`, approves the escrow for more and deposits `amount` (through
    /// depositFor, so the gas benchmark's set-up never calls the `deposit` it measures).
    function fund(address who, uint256 amount) internal {
        kusd.mint(who, amount);
        vm.startPrank(who);
        kusd.approve(address(escrow), type(uint256).max);
        escrow.depositFor(who, amount);
        vm.stopPrank();
    }

    function openSession(uint256 cap) internal returns (bytes32 id) {
        vm.prank(payer);
        id = escrow.openSession(provider, sessionKey, cap, uint64(block.timestamp + 1 days));
    }

    function domainSeparator(address verifyingContract, uint256 chainId) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("KinesisEscrow"),
                keccak256("1"),
                chainId,
                verifyingContract
            )
        );
    }

    function voucherDigest(address verifyingContract, uint256 chainId, IKinesisEscrow.Voucher memory v)
        internal
        pure
        returns (bytes32)
    {
        bytes32 structHash = keccak256(abi.encode(VOUCHER_TYPEHASH, v.sessionId, v.cumulativeAmount, v.cumulativeEnergyMj));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(verifyingContract, chainId), structHash));
    }

    function voucher(bytes32 id, uint256 amount, uint256 energy) internal pure returns (IKinesisEscrow.Voucher memory) {
        return IKinesisEscrow.Voucher({sessionId: id, cumulativeAmount: amount, cumulativeEnergyMj: energy});
    }

    /// Signs for this chain and `escrow`.
    function sign(uint256 pk, IKinesisEscrow.Voucher memory v) internal view returns (bytes memory) {
        return signFor(pk, v, address(escrow), block.chainid);
    }

    function signFor(uint256 pk, IKinesisEscrow.Voucher memory v, address verifyingContract, uint256 chainId)
        internal
        pure
        returns (bytes memory)
    {
        (uint8 sv, bytes32 r, bytes32 s) = vm.sign(pk, voucherDigest(verifyingContract, chainId, v));
        return abi.encodePacked(r, s, sv);
    }
}
