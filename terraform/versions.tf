terraform {
  # Lower bounds only: the module uses optional() object attributes (1.3+) and check-free
  # validation referencing other variables is avoided, so 1.5 is a comfortable floor.
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}
