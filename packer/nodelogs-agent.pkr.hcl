# Bakes the nodelogs agent into an AMI (Packer 1.6.6 or newer; the amazon-ebs builder is built in).
#
#   pip wheel --no-deps -w dist .          # from the repository root: builds dist/nodelogs-<version>-py3-none-any.whl
#   packer build -var wheel=dist/nodelogs-0.1.0-py3-none-any.whl packer/nodelogs-agent.pkr.hcl
#
# The image gets the agent in its own virtualenv (/opt/nodelogs/venv, no extras: no boto3, no
# google-cloud-storage), the systemd unit installed but NOT enabled, and /etc/nodelogs as a 0700 root
# directory. Nothing starts at boot without a key: the user data keysvc renders writes the key and
# starts the unit. Relative paths (wheel, unit, script) are resolved from the working directory, so
# run packer from the repository root.

variable "region" {
  type        = string
  default     = "us-east-1"
  description = "AWS region the image is built in (and where the AMI is registered)."
}

variable "instance_type" {
  type        = string
  default     = "t3.small"
  description = "Builder instance type; any x86_64 type with 2 GiB of memory is enough."
}

variable "source_ami_name" {
  type        = string
  default     = "debian-12-amd64-*"
  description = "Name filter for the base AMI (the newest match is used). Point it at your node image, e.g. an EKS-optimised AMI."
}

variable "source_ami_owners" {
  type        = list(string)
  default     = ["136693071363"]
  description = "Accounts that may own the base AMI (136693071363 is Debian's official account)."
}

variable "ssh_username" {
  type        = string
  default     = "admin"
  description = "Login user of the base AMI (admin on Debian, ec2-user on Amazon Linux)."
}

variable "ami_name_prefix" {
  type        = string
  default     = "nodelogs-agent"
  description = "Prefix of the produced AMI's name; a timestamp is appended."
}

variable "wheel" {
  type        = string
  default     = "dist/nodelogs-0.1.0-py3-none-any.whl"
  description = "The built nodelogs wheel to install (pip wheel --no-deps -w dist .)."
}

source "amazon-ebs" "nodelogs" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = var.ssh_username
  ami_name      = "${var.ami_name_prefix}-${formatdate("YYYYMMDD-hhmmss", timestamp())}"

  source_ami_filter {
    filters = {
      name                = var.source_ami_name
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = var.source_ami_owners
    most_recent = true
  }

  tags = {
    Name       = "${var.ami_name_prefix}"
    nodelogs   = "agent"
    source_ami = "{{ .SourceAMI }}"
    contents   = "nodelogs agent in /opt/nodelogs/venv; nodelogs-agent.service installed, not enabled"
  }
}

build {
  sources = ["source.amazon-ebs.nodelogs"]

  provisioner "file" {
    source = var.wheel
    # pip only installs a file whose name is a valid wheel name, so the upload keeps it.
    destination = "/tmp/${basename(var.wheel)}"
  }

  provisioner "file" {
    source      = "systemd/nodelogs-agent.service"
    destination = "/tmp/nodelogs-agent.service"
  }

  provisioner "shell" {
    script          = "packer/install-agent.sh"
    execute_command = "sudo env {{ .Vars }} sh '{{ .Path }}'"
    environment_vars = [
      "NODELOGS_WHEEL=/tmp/${basename(var.wheel)}",
      "NODELOGS_UNIT=/tmp/nodelogs-agent.service",
    ]
  }
}
