terraform {
  # Lower bounds only. Validation conditions reference only their own variable (referencing
  # others needs 1.9), and strcontains/startswith/endswith need 1.5.
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.51" # aws_lambda_function.code_sha256 (outputs.tf, cost_tracker.tf)
    }
  }
}
