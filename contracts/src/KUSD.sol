// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title KUSD, a test stablecoin for local chains only
/// @notice 6 decimals like USDC; the deployer mints. Never deploy this where it could be mistaken
/// for money: it has no backing.
contract KUSD is ERC20, Ownable {
    constructor(address initialOwner) ERC20("Kinesis Test USD", "KUSD") Ownable(initialOwner) {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
