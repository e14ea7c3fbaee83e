"""The first-boot files of a card: cloud-init's seeds, or firstrun.sh and its cmdline.txt.

Pure functions of a :class:`~flash_settings.Card`: they return text, and
write nothing. Both styles end the same way: they install
``appliance-firstboot.service`` from the card's ``appliance/`` folder and
enable it (:data:`hook_commands`); that unit installs the appliance once the
network is up.

Values go into YAML as JSON strings (valid YAML double-quoted scalars) and
into shell as single-quoted words, so no value can break out of its place.
"""

from __future__ import annotations

import json
import shlex
import uuid
from pathlib import Path

from flash_settings import Card, Wifi

REPO = Path(__file__).resolve().parents[2]
FIRSTBOOT_UNIT = REPO / "systemd" / "appliance-firstboot.service"
UNIT_BOOT_MOUNT = "/boot/firmware"
"""The boot partition's mount point as the shipped first-boot unit names it."""

BUNDLE_DIR = "appliance"
"""The folder on the boot partition that holds the appliance's files."""
FIRSTBOOT_NAME = "appliance-firstboot.service"
LOGIN_GROUPS = (
    "adm",
    "audio",
    "dialout",
    "gpio",
    "i2c",
    "input",
    "netdev",
    "plugdev",
    "spi",
    "sudo",
    "users",
    "video",
)
HEREDOC_END = "APPLIANCE_EOF"


def _q(value: str) -> str:
    """A YAML double-quoted scalar (a JSON string is one)."""
    return json.dumps(value)


def firstboot_unit(boot_mount: str) -> str:
    """The shipped ``appliance-firstboot.service`` with the image's boot mount point."""
    text = FIRSTBOOT_UNIT.read_text()
    return text.replace(f"{UNIT_BOOT_MOUNT}/", f"{boot_mount.rstrip('/')}/")


def hook_commands(boot_mount: str) -> list[list[str]]:
    """What the card's first-boot mechanism runs for the appliance, as argument lists."""
    unit = f"/etc/systemd/system/{FIRSTBOOT_NAME}"
    source = f"{boot_mount.rstrip('/')}/{BUNDLE_DIR}/{FIRSTBOOT_NAME}"
    return [
        ["install", "-m", "0644", source, unit],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", FIRSTBOOT_NAME],
    ]


def user_data(card: Card, boot_mount: str) -> str:
    """cloud-init's ``user-data``: name, login, time zone, and the appliance's hook."""
    lines = [
        "#cloud-config",
        '# Written by the appliance\'s scripts/flash (README.md, "Installing devices").',
        f"hostname: {_q(card.hostname)}",
        "manage_etc_hosts: true",
    ]
    if card.timezone:
        lines.append(f"timezone: {_q(card.timezone)}")
    runcmd = []
    if card.ssh_keys:
        lines += [
            "users:",
            f"  - name: {_q(card.user)}",
            f"    groups: [{', '.join(_q(g) for g in LOGIN_GROUPS)}]",
            '    shell: "/bin/bash"',
            "    lock_passwd: true",
            '    sudo: "ALL=(ALL) NOPASSWD:ALL"',
            "    ssh_authorized_keys:",
            *(f"      - {_q(key)}" for key in card.ssh_keys),
            "ssh_pwauth: false",
        ]
        runcmd.append(["systemctl", "enable", "--now", "ssh"])
    runcmd += hook_commands(boot_mount)
    runcmd.append(["systemctl", "start", "--no-block", FIRSTBOOT_NAME])
    lines.append("runcmd:")
    lines += [f"  - [{', '.join(_q(word) for word in command)}]" for command in runcmd]
    return "\n".join(lines) + "\n"


def meta_data(card: Card) -> str:
    """cloud-init's ``meta-data``: a fresh instance id, so cloud-init runs once for this card."""
    instance = f"appliance-{card.hostname}-{uuid.uuid4().hex[:12]}"
    return f"instance-id: {_q(instance)}\nlocal-hostname: {_q(card.hostname)}\n"


def network_config(wifi: Wifi) -> str:
    """cloud-init's ``network-config`` (netplan v2) for one Wi-Fi network, with its hashed key."""
    return (
        "\n".join(
            [
                "# Written by the appliance's scripts/flash: the Wi-Fi network.",
                "network:",
                "  version: 2",
                "  renderer: NetworkManager",
                "  wifis:",
                "    wlan0:",
                "      dhcp4: true",
                "      optional: true",
                f"      regulatory-domain: {_q(wifi.country)}",
                "      access-points:",
                f"        {_q(wifi.ssid)}:",
                f"          password: {_q(wifi.psk.reveal())}",
            ]
        )
        + "\n"
    )


def firstrun_cmdline(cmdline: str, boot_mount: str, wifi: Wifi | None) -> str:
    """``cmdline.txt`` (one line) that runs firstrun.sh once, then reboots.

    The Wi-Fi country goes before ``systemd.run=``: firstrun.sh removes
    everything from there on, and the regulatory domain must stay.
    """
    words = cmdline.strip()
    if wifi is not None:
        words += f" cfg80211.ieee80211_regdom={wifi.country}"
    script = f"{boot_mount.rstrip('/')}/firstrun.sh"
    words += (
        f" systemd.run={script} systemd.run_success_action=reboot "
        "systemd.unit=kernel-command-line.target"
    )
    return words + "\n"


def _heredoc(target: str, content: str) -> list[str]:
    """Shell lines that write ``content`` to ``target`` (a shell word, expanded), verbatim."""
    return [f"cat >{target} <<'{HEREDOC_END}'", content.rstrip("\n"), HEREDOC_END]


def _nm_ssid(ssid: str) -> str:
    """An SSID for a NetworkManager keyfile: as is if plain, else its bytes as a list."""
    if all(c.isalnum() or c in " _.-" for c in ssid) and ssid.strip() == ssid:
        return ssid
    return "".join(f"{byte};" for byte in ssid.encode())


def _wifi_lines(wifi: Wifi) -> list[str]:
    nm = "/etc/NetworkManager/system-connections/appliance-wifi.nmconnection"
    keyfile = "\n".join(
        [
            "[connection]",
            "id=appliance-wifi",
            f"uuid={uuid.uuid4()}",
            "type=wifi",
            "[wifi]",
            "mode=infrastructure",
            f"ssid={_nm_ssid(wifi.ssid)}",
            "[wifi-security]",
            "key-mgmt=wpa-psk",
            f"psk={wifi.psk.reveal()}",
            "[ipv4]",
            "method=auto",
            "[ipv6]",
            "method=auto",
        ]
    )
    supplicant = "\n".join(
        [
            f"country={wifi.country}",
            "ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev",
            "update_config=1",
            "network={",
            f"\tssid={wifi.ssid.encode().hex()}",
            f"\tpsk={wifi.psk.reveal()}",
            "}",
        ]
    )
    return [
        f"say 'Wi-Fi: '{shlex.quote(wifi.ssid)}",
        "umask 077",
        "if [ -d /etc/NetworkManager/system-connections ]; then",
        *_heredoc(nm, keyfile),
        f"    chmod 600 {nm}",
        "else",
        "    mkdir -p /etc/wpa_supplicant",
        *_heredoc("/etc/wpa_supplicant/wpa_supplicant.conf", supplicant),
        "    chmod 600 /etc/wpa_supplicant/wpa_supplicant.conf",
        "fi",
        "umask 022",
        "rfkill unblock wifi",
        'for f in /var/lib/systemd/rfkill/*:wlan; do [ -e "$f" ] && echo 0 >"$f"; done',
    ]


def _login_lines(card: Card) -> list[str]:
    user = shlex.quote(card.user)
    groups = " ".join(LOGIN_GROUPS)
    return [
        f"USERNAME={user}",
        'say "login: $USERNAME, with an SSH key, no password"',
        "FIRSTUSER=$(getent passwd 1000 | cut -d: -f1)",
        "if [ -x /usr/lib/userconf-pi/userconf ]; then",
        '    /usr/lib/userconf-pi/userconf "$USERNAME" "*"  # renames the first user',
        'elif [ -n "$FIRSTUSER" ] && [ "$FIRSTUSER" != "$USERNAME" ]; then',
        '    usermod -l "$USERNAME" -d "/home/$USERNAME" -m "$FIRSTUSER"',
        '    groupmod -n "$USERNAME" "$FIRSTUSER"',
        'elif [ -z "$FIRSTUSER" ]; then',
        '    groups=""',
        f"    for g in {groups}; do",
        '        getent group "$g" >/dev/null && groups="$groups${groups:+,}$g"',
        "    done",
        '    useradd -m -s /bin/bash ${groups:+-G "$groups"} "$USERNAME"',
        "fi",
        'usermod -p "*" "$USERNAME"',
        'HOME_DIR=$(getent passwd "$USERNAME" | cut -d: -f6)',
        'install -d -m 700 -o "$USERNAME" -g "$(id -gn "$USERNAME")" "$HOME_DIR/.ssh"',
        *_heredoc('"$HOME_DIR/.ssh/authorized_keys"', "\n".join(card.ssh_keys)),
        'chown "$USERNAME:$(id -gn "$USERNAME")" "$HOME_DIR/.ssh/authorized_keys"',
        'chmod 600 "$HOME_DIR/.ssh/authorized_keys"',
        "mkdir -p /etc/sudoers.d",
        "printf '%s ALL=(ALL) NOPASSWD: ALL\\n' \"$USERNAME\" \\",
        "    >/etc/sudoers.d/010_appliance-nopasswd",
        "chmod 440 /etc/sudoers.d/010_appliance-nopasswd",
        "if [ -d /etc/ssh/sshd_config.d ]; then",
        "    echo 'PasswordAuthentication no' >/etc/ssh/sshd_config.d/appliance.conf",
        "fi",
        "systemctl enable ssh",
    ]


def firstrun_sh(card: Card, boot_mount: str) -> str:
    """``firstrun.sh``: name, login, Wi-Fi, time zone, the appliance's hook; then it goes."""
    boot = boot_mount.rstrip("/")
    hostname = shlex.quote(card.hostname)
    lines = [
        "#!/bin/bash",
        '# Written by the appliance\'s scripts/flash (README.md, "Installing devices").',
        "# Raspberry Pi OS runs it once, early in the first boot (systemd.run= in",
        "# cmdline.txt), then reboots. It names the device, sets up the login, Wi-Fi",
        "# and time zone, and enables appliance-firstboot.service, which installs the",
        "# appliance once the network is up. Then it removes itself from the card.",
        "set +e",
        f"BOOT={shlex.quote(boot)}",
        'say() { echo "appliance firstrun: $*"; }',
        "",
        f"say hostname {hostname}",
        f"echo {hostname} >/etc/hostname",
        "sed -i '/^127\\.0\\.1\\.1[[:space:]]/d' /etc/hosts",
        f"printf '127.0.1.1\\t%s\\n' {hostname} >>/etc/hosts",
    ]
    if card.ssh_keys:
        lines += ["", *_login_lines(card)]
    if card.wifi is not None:
        lines += ["", *_wifi_lines(card.wifi)]
    if card.timezone:
        zone = shlex.quote(card.timezone)
        lines += [
            "",
            f"say time zone {zone}",
            f"ln -sf /usr/share/zoneinfo/{zone} /etc/localtime",
            f"echo {zone} >/etc/timezone",
        ]
    lines += [
        "",
        'say "enabling appliance-firstboot.service: it installs the appliance after the reboot"',
        *(shlex.join(command) for command in hook_commands(boot_mount)),
        "",
        'rm -f "$BOOT/firstrun.sh"',
        "sed -i 's| systemd.run.*||g' \"$BOOT/cmdline.txt\"",
        "say finished",
        "exit 0",
    ]
    return "\n".join(lines) + "\n"
