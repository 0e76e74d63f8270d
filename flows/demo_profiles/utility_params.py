"""The planted world of the "utility" demo profile, stated once.

An electricity and water supplier: residential and small-business accounts on four
tariffs, eight touchpoints from move-in to tariff offers, item ratings on 0-10 where 0
means "not applicable", a yes/no "satisfied" goal, and exports whose headers and codes are
the billing system's own (``Account Number``, ``Customer Class``, ``Tariff``, dd/mm/yyyy).

Everything the generator plants and everything the example configuration declares comes
from this module, so the extracts, ``_config/cxloop.yml``, the reference files and
``_truth/`` cannot disagree with each other. Nothing here is read by the pipeline itself:
the pipeline learns the domain only from the configuration the profile writes.
"""

from __future__ import annotations

import numpy as np

PROFILE = "utility"

# --- the domain (what the configuration declares) ----------------------------------------
SEGMENTS = ("residential", "small_business")
SEGMENT_LABELS = ("Residential", "Small Business")  # as the CRM exports them
SEGMENT_P = np.array([0.85, 0.15])
PLANS = ("fixed_12m", "variable", "green", "prepay")  # tariffs, exported as-is
PLAN_P = np.array([0.35, 0.35, 0.15, 0.15])
PLAN_PRICE = np.array([92.0, 98.0, 104.0, 70.0])  # monthly direct debit, residential
SEGMENT_MULT = np.array([1.0, 3.2])
REGIONS = ("highland", "central", "coastal", "metro")
REGION_P = np.array([0.15, 0.35, 0.2, 0.3])
CHANNELS = ("web", "app", "phone", "field", "chat")
ACQ_P = np.array([0.5, 0.1, 0.35, 0.0, 0.05])  # how accounts were opened
DWELLINGS = ("house", "flat", "commercial_unit")
METERS = ("smart", "standard", "prepayment")
STATUSES = ("active", "cancelled")
STATUS_LABELS = ("Live", "Closed")
SURVEY_TYPES = ("transactional", "relationship")
SURVEY_LABELS = ("After contact", "Pulse")
CANCEL_REASONS = ("price", "billing", "reliability", "moved_out", "other")
CHARGE_TYPES = ("meter_upgrade", "reconnection_fee", "late_payment_fee")
CHARGE_PRICE = np.array([60.0, 45.0, 12.0])
EXPERIENCE_DIMENSIONS = ("reliability", "trust", "convenience", "keeping_promises",
                         "respect", "autonomy", "knowledge", "benefit")
YES_NO = ("No", "Yes")  # index = truth value
Y_N = ("N", "Y")

# Scales (inclusive). Item ratings are exported 0-10; 0 = "not applicable" becomes null.
ITEM_SCALE = (1, 10)
ITEM_NOT_APPLICABLE = 0
NPS_SCALE, CSAT_SCALE, CES_SCALE, STAY_SCALE = (0, 10), (1, 5), (1, 7), (1, 7)

# --- touchpoints: catalogue rows and the planted experience ------------------------------
# mean: latent mean item rating (1-10); w_sat: effect of one rating point (item - mean) on
# the log-odds of "satisfied"; w_stay: effect on likelihood to stay (1-7); channel: shares
# over CHANNELS; kpi: an operational KPI the marts already compute; unres: log-odds of an
# unresolved contact for an average customer; wait: lognormal median wait (seconds).
# Planted: outage_report and billing drive "satisfied" most (fix first: important and
# poorly rated); tariff_offers has a NEGATIVE effect (customers contacted often about
# offers rate the contact as informative, and are less satisfied: contact fatigue);
# online_account is rated best and matters least (possible overkill).
TOUCHPOINTS: dict[str, dict] = {
    "move_in": dict(
        name="Move-in and connection", stage="onboarding", default_channel="web",
        item="connected_on_time", dim="keeping_promises",
        text="My supply was connected on the day you promised",
        mean=7.2, w_sat=0.10, w_stay=0.05, channel=(0.6, 0, 0.4, 0, 0),
        kpi="avg_wait_seconds", kpi_text="Days from move-in request to connection (seconds)",
        kpi_hib="false", kpi_exp=432000, kpi_bench=86400, unres=-2.6, wait=259_200,
        owner=("onboarding_team", "nia.okafor", "head.of.operations"), key="true"),
    "meter_reading": dict(
        name="Meter reading", stage="use", default_channel="app",
        item="reading_easy", dim="convenience",
        text="Giving you a meter reading is easy",
        mean=7.6, w_sat=0.06, w_stay=0.03, channel=(0.3, 0.5, 0.1, 0.1, 0),
        kpi="resolution_rate", kpi_text="Share of readings accepted first time",
        kpi_hib="true", kpi_exp=0.85, kpi_bench=0.97, unres=-2.4, wait=20,
        owner=("metering", "ravi.shah", "head.of.metering"), key="false"),
    "billing": dict(
        name="Bill and balance", stage="billing", default_channel="web",
        item="bill_accurate", dim="trust",
        text="My bill is accurate and easy to understand",
        mean=5.4, w_sat=0.75, w_stay=0.30, channel=(0.4, 0.2, 0.3, 0, 0.1),
        kpi="resolution_rate", kpi_text="Share of billing contacts that end resolved",
        kpi_hib="true", kpi_exp=0.80, kpi_bench=0.95, unres=-1.6, wait=240,
        owner=("billing_ops", "li.na", "head.of.finance"), key="true"),
    "payment_plan": dict(
        name="Payment plan", stage="billing", default_channel="phone",
        item="plan_affordable", dim="respect",
        text="You agreed a payment plan I can afford",
        mean=6.4, w_sat=0.12, w_stay=0.10, channel=(0.2, 0, 0.7, 0, 0.1),
        kpi="fcr_rate", kpi_text="Share of payment-plan calls settled at first contact",
        kpi_hib="true", kpi_exp=0.65, kpi_bench=0.85, unres=-1.8, wait=420,
        owner=("collections", "grace.obi", "head.of.finance"), key="false"),
    "outage_report": dict(
        name="Outage and fault report", stage="support", default_channel="phone",
        item="restored_as_promised", dim="reliability",
        text="My supply came back when you said it would",
        mean=5.8, w_sat=0.75, w_stay=0.25, channel=(0.2, 0.3, 0.45, 0, 0.05),
        kpi="avg_wait_seconds", kpi_text="Time in the fault-line queue (seconds)",
        kpi_hib="false", kpi_exp=600, kpi_bench=90, unres=-1.4, wait=300,
        owner=("network_ops", "tom.reid", "head.of.network"), key="true"),
    "field_visit": dict(
        name="Field technician visit", stage="support", default_channel="field",
        item="technician_fixed", dim="knowledge",
        text="The technician fixed the problem on the first visit",
        mean=7.8, w_sat=0.10, w_stay=0.05, channel=(0, 0, 0, 1, 0),
        kpi="fcr_rate", kpi_text="Share of faults fixed on the first visit",
        kpi_hib="true", kpi_exp=0.75, kpi_bench=0.92, unres=-2.0, wait=172_800,
        owner=("field_ops", "jun.wang", "head.of.field"), key="false"),
    "online_account": dict(
        name="Online account and app", stage="use", default_channel="app",
        item="self_service_works", dim="autonomy",
        text="I can do what I need in my online account",
        mean=8.3, w_sat=0.04, w_stay=0.02, channel=(0.4, 0.6, 0, 0, 0),
        kpi="resolution_rate", kpi_text="Share of self-service sessions that end resolved",
        kpi_hib="true", kpi_exp=0.75, kpi_bench=0.95, unres=-2.2, wait=2,
        owner=("digital", "mei.chen", "head.of.digital"), key="false"),
    "tariff_offers": dict(
        name="Tariff review and offers", stage="renewal", default_channel="phone",
        item="offers_informative", dim="benefit",
        text="You keep me informed about new tariffs and offers",
        mean=6.6, w_sat=-0.35, w_stay=-0.05, channel=(0, 0.1, 0.8, 0, 0.1),
        kpi="resolution_rate", kpi_text="Share of tariff contacts that end resolved",
        kpi_hib="true", kpi_exp=0.80, kpi_bench=0.95, unres=-2.2, wait=60,
        owner=("retention_desk", "hana.sato", "head.of.retention"), key="true"),
}
CODES = tuple(TOUCHPOINTS)
TOP_DRIVERS = ("restored_as_promised", "bill_accurate")  # largest positive w_sat
NEGATIVE_DRIVER = "offers_informative"
GOAL = "satisfied"  # the binary goal the drivers are planted on
STAY_GOAL = "likelihood_to_stay"

# Latent rating model (1-10): mean + segment offset + general mood + trait loading + noise.
SEGMENT_RATING_OFFSET = np.array([0.0, -0.8])  # small business rates every touchpoint worse
GENERAL_SD = 0.6
RATING_NOISE_SD = 1.3
BILLING_LOADING = -1.2  # billing item rating -= 1.2 * billing_error_prone
OUTAGE_LOADING = -1.0  # outage item rating -= 1.0 * outage_exposure
OFFER_LOADING = 1.0  # offers item rating += 1.0 * contact_intensity (they hear a lot)
UNRESOLVED_DROP = 1.5  # transactional rating after an unresolved contact
SAT_BASE = 0.7  # log-odds of "satisfied" at mean ratings
STAY_BASE, STAY_NOISE = 4.8, 0.7
PRICE_SHOPPER_STAY_DROP = 1.5
P_NOT_APPLICABLE = 0.7  # a pulse item the customer never met: answered 0 (else skipped)

# --- the planted churn model: Weibull proportional hazards, t = days since supply start --
WEIBULL_K, WEIBULL_LAM = 0.85, 1500.0
BETAS: dict[str, float] = {
    "plan_fixed_12m": -0.6,
    "plan_prepay": 0.4,
    "segment_small_business": 0.3,
    "billing_error_prone": 0.5,
    "outage_exposure": 0.4,
    "payment_difficulty": 0.6,
    "price_shopper": 1.0,
}
COVARIATES = tuple(BETAS)
COVARIATE_DOC = {
    "plan_fixed_12m": ("binary", "P=0.35", "Tariff == 'fixed_12m' (never changes)"),
    "plan_prepay": ("binary", "P=0.15", "Tariff == 'prepay' (never changes)"),
    "segment_small_business": ("binary", "P=0.15", "Customer Class == 'Small Business'"),
    "billing_error_prone": ("latent", "N(0,1)", "more billing contacts, more unresolved; "
                            "bill_accurate rating -= 1.2 * value"),
    "outage_exposure": ("latent", "N(0,1)", "more outage reports and field visits; "
                        "restored_as_promised rating -= 1.0 * value"),
    "payment_difficulty": ("binary", "P=0.12", "payment_plan contacts, late payment fees, "
                           "likelihood_to_stay -0.8"),
    "price_shopper": ("binary", "P=0.15", "likelihood_to_stay -1.5, cancel_reason mostly price"),
}
P_PAYMENT_DIFFICULTY, P_PRICE_SHOPPER = 0.12, 0.15
BASE_HISTORY_DAYS = 4 * 365
MOVE_INS_PER_CUSTOMER_DAY = 0.18 / 365

# --- contact and survey rates (per active customer-day unless said) ----------------------
RATES = {"online_account": 6 / 365, "outage_report": 1.2 / 365, "tariff_offers": 2.0 / 365,
         "payment_plan_difficulty": 6 / 365, "payment_plan_other": 0.1 / 365,
         "meter_fault": 0.15 / 365}
BILL_EVERY_DAYS = 30
READING_EVERY_DAYS = 90  # standard meters: customers submit a reading
P_FIELD_AFTER_OUTAGE = 0.35
P_INVITE_AFTER_CONTACT = 0.35
PULSE_EVERY_DAYS = 45
RESPONSE_P_MEAN = 0.55
ORDER_RATE = 0.002
UPDATE_RATE = 0.5 / 365
P_CONSENT = 0.6

# --- the export: contract column -> the source system's header, per entity ---------------
# Extra columns (not in the contract) are listed with themselves as header; the mapping
# keeps them per row in ``attributes``.
HEADERS: dict[str, dict[str, str]] = {
    "customers": {"customer_id": "Account Number", "full_name": "Account Holder",
                  "email": "Email Address", "phone": "Contact Phone",
                  "region": "Service Region", "segment": "Customer Class", "plan": "Tariff",
                  "acquisition_channel": "Joined Via", "marketing_consent": "Marketing Opt-In",
                  "signup_date": "Supply Start", "updated_at": "Last Modified",
                  "dwelling_type": "dwelling_type", "meter_type": "meter_type"},
    "subscriptions": {"subscription_id": "Agreement Ref", "customer_id": "Account Number",
                      "plan": "Tariff", "status": "Agreement Status",
                      "start_date": "Start Date", "end_date": "End Date",
                      "cancel_reason": "Closure Reason",
                      "monthly_value": "Monthly Direct Debit", "updated_at": "Last Modified"},
    "orders": {"order_id": "Charge Ref", "customer_id": "Account Number",
               "order_date": "Charge Date", "amount": "Amount (GBP)",
               "charge_type": "charge_type"},
    "interactions": {"interaction_id": "Contact ID", "customer_id": "Account Number",
                     "touchpoint_code": "Service Area", "channel": "Contact Channel",
                     "occurred_at": "Opened", "wait_seconds": "Queue Secs",
                     "handle_seconds": "Handling Secs", "resolved": "Resolved?",
                     "first_contact_resolution": "Fixed First Time"},
    "invitations": {"invitation_id": "Invite ID", "customer_id": "Account Number",
                    "survey_type": "Survey", "interaction_id": "Contact ID",
                    "touchpoint_code": "Service Area", "sent_at": "Sent"},
    "responses": {"response_id": "Response ID", "invitation_id": "Invite ID",
                  "customer_id": "Account Number", "survey_type": "Survey",
                  "touchpoint_code": "Service Area", "invited_at": "Invited",
                  "responded_at": "Submitted", "nps": "Recommend (0-10)",
                  "csat": "Service Rating (1-5)", "ces": "Ease (1-7)",
                  "overall_satisfaction": "Satisfied?",
                  "likelihood_to_renew": "Likely to Stay (1-7)", "comment": "Verbatim",
                  "comment_language": "Language"},
    "item_ratings": {"response_id": "Response ID", "customer_id": "Account Number",
                     "item_code": "Question", "touchpoint_code": "Service Area",
                     "dimension": "Theme", "rating": "Score (0-10)",
                     "responded_at": "Submitted"},
}
EXTRA_COLUMNS = {"customers": ("dwelling_type", "meter_type"), "orders": ("charge_type",)}
DATE_FORMAT, TIME_FORMAT = "%d/%m/%Y", "%d/%m/%Y %H:%M"
# Source value -> contract value, per entity and contract column (what the mapping undoes).
VALUE_MAPS: dict[str, dict[str, dict[str, str]]] = {
    "customers": {"segment": dict(zip(SEGMENT_LABELS, SEGMENTS, strict=True)),
                  "marketing_consent": {"Y": "true", "N": "false"}},
    "subscriptions": {"status": dict(zip(STATUS_LABELS, STATUSES, strict=True))},
    "interactions": {"resolved": {"Y": "true", "N": "false"},
                     "first_contact_resolution": {"Y": "true", "N": "false"}},
    "invitations": {"survey_type": dict(zip(SURVEY_LABELS, SURVEY_TYPES, strict=True))},
    "responses": {"survey_type": dict(zip(SURVEY_LABELS, SURVEY_TYPES, strict=True)),
                  "overall_satisfaction": {"Yes": "1", "No": "0"}},
}
EXPORT_NAMES = {"customers": "ACCOUNTS", "subscriptions": "AGREEMENTS", "orders": "CHARGES",
                "interactions": "CONTACTS", "invitations": "survey_invites",
                "responses": "survey_responses", "item_ratings": "survey_scores"}

COMMENTS = {
    "pos": ["Power back quickly, thanks.", "Bill was clear this time.",
            "Friendly technician, sorted it first visit.", "Easy to send my reading."],
    "mid": ["OK, nothing special.", "Took a while but got there.",
            "Fine, though the app logged me out twice."],
    "neg": ["Estimated bill again, nobody reads the meter.",
            'Told power would be back "within the hour" - it took all day.',
            "Stop calling me about offers, just fix my bill.",
            "Too expensive, I am switching supplier."],
}
P_COMMENT = 0.3
