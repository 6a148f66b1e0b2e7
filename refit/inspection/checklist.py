"""What an inspector checks on each kind of device, and how the answers read to a person.

The verdict needs two answers (does it power on; is the activation lock off) and the screen;
everything else is an explicit yes / no / not checked per item, and which items apply depends
on the device's catalog category (orders.device_category: phone, tablet, laptop, watch). The
answers are kept with the inspection (`checklist.items`); the labels here are what the order
page and the inspection form show, so one place names each item.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from refit.models.catalog import DeviceCategory


class Answer(StrEnum):
    YES = "yes"
    NO = "no"
    NOT_CHECKED = "not_checked"


ANSWER_LABELS = {Answer.YES: "Yes", Answer.NO: "No", Answer.NOT_CHECKED: "Not checked"}

# The answers the verdict itself needs (yes or no: "not checked" is not an answer to them).
POWERS_ON = "Powers on"
ACTIVATION_LOCK_OFF = "Activation lock (Find My / FRP / firmware password) is off"
SCREEN = "Screen"
BATTERY = "Battery health"
SCREEN_LABELS = {
    "ok": "No marks with the screen on",
    "scratched": "Scratched, no cracks",
    "cracked": "Cracked glass, display and touch work",
    "dead": "No picture, lines, dead areas or touch not working",
}

# Every item any category may have: code -> the question as the inspector reads it.
ITEMS: dict[str, str] = {
    "touch_works": "Touchscreen responds everywhere",
    "buttons_work": "Buttons and switches work",
    "cameras_work": "Cameras work (front and back)",
    "audio_works": "Speakers and microphones work",
    "charging_works": "Charges (cable or wireless)",
    "biometrics_work": "Face ID / fingerprint works",
    "cellular_works": "Takes a SIM and finds a network",
    "wifi_bluetooth_work": "Wi-Fi and Bluetooth connect",
    "keyboard_works": "Every key of the keyboard works",
    "trackpad_works": "Trackpad clicks and tracks",
    "hinge_ok": "Hinge holds the screen at any angle",
    "ports_work": "Ports work (USB, charging)",
    "webcam_works": "Webcam works",
    "crown_works": "Digital crown / side button works",
    "sensors_work": "Heart-rate and other sensors read",
    "strap_ok": "Strap and its clasp are intact",
}

BY_CATEGORY: dict[DeviceCategory, tuple[str, ...]] = {
    DeviceCategory.PHONE: (
        "touch_works",
        "buttons_work",
        "cameras_work",
        "audio_works",
        "charging_works",
        "biometrics_work",
        "cellular_works",
    ),
    DeviceCategory.TABLET: (
        "touch_works",
        "buttons_work",
        "cameras_work",
        "audio_works",
        "charging_works",
        "biometrics_work",
        "wifi_bluetooth_work",
    ),
    DeviceCategory.LAPTOP: (
        "keyboard_works",
        "trackpad_works",
        "hinge_ok",
        "ports_work",
        "webcam_works",
        "audio_works",
        "wifi_bluetooth_work",
    ),
    DeviceCategory.WATCH: (
        "touch_works",
        "crown_works",
        "sensors_work",
        "charging_works",
        "strap_ok",
        "wifi_bluetooth_work",
    ),
}


def category_of(device_category: str | None) -> DeviceCategory:
    """The order's category; an order from before categories were copied is taken as a phone
    (the catalog's first and most common kind)."""
    try:
        return DeviceCategory(device_category or DeviceCategory.PHONE)
    except ValueError:
        return DeviceCategory.PHONE


def items_for(device_category: str | None) -> tuple[str, ...]:
    return BY_CATEGORY[category_of(device_category)]


def not_for(device_category: str | None, answered: dict[str, Any]) -> list[str]:
    """The answered items that are not this category's (a laptop has no SIM tray)."""
    allowed = set(items_for(device_category))
    return sorted(code for code in answered if code not in allowed)


def _yes_no(value: Any) -> str:
    if value is True:
        return ANSWER_LABELS[Answer.YES]
    if value is False:
        return ANSWER_LABELS[Answer.NO]
    return ANSWER_LABELS[Answer.NOT_CHECKED]


def rows(checklist: dict[str, Any]) -> list[tuple[str, str]]:
    """The kept checklist as (label, answer) rows for people: "Powers on: Yes"."""
    out = [
        (POWERS_ON, _yes_no(checklist.get("powers_on"))),
        (ACTIVATION_LOCK_OFF, _yes_no(checklist.get("activation_lock_off"))),
        (SCREEN, SCREEN_LABELS.get(str(checklist.get("screen")), str(checklist.get("screen")))),
    ]
    battery = checklist.get("battery_health_pct")
    out.append((BATTERY, "Not checked" if battery is None else f"{battery}%"))
    for code, answer in (checklist.get("items") or {}).items():
        try:
            said = ANSWER_LABELS[Answer(answer)]
        except ValueError:
            said = str(answer)
        out.append((ITEMS.get(code, code.replace("_", " ").capitalize()), said))
    return out
