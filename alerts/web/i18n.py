# ruff: noqa: RUF001  (Chinese labels use full-width punctuation on purpose)
"""Labels in Chinese (default) and English, dates in the bank's time zone, amounts."""

from __future__ import annotations

from datetime import datetime, tzinfo
from decimal import Decimal

DEFAULT_LANGUAGE = "zh-CN"
LANGUAGES = ("zh-CN", "en")

LABELS: dict[str, dict[str, str]] = {
    "app": {"zh-CN": "反洗钱监测", "en": "AML watch"},
    "inbox": {"zh-CN": "我的待办", "en": "Inbox"},
    "console": {"zh-CN": "合规控制台", "en": "Compliance console"},
    "cases": {"zh-CN": "案件", "en": "Cases"},
    "sign_in": {"zh-CN": "登录", "en": "Sign in"},
    "sign_out": {"zh-CN": "退出", "en": "Sign out"},
    "user_id": {"zh-CN": "用户名", "en": "User id"},
    "password": {"zh-CN": "密码", "en": "Password"},
    "open": {"zh-CN": "未结案件", "en": "Open"},
    "new": {"zh-CN": "新案件", "en": "New"},
    "overdue": {"zh-CN": "已逾期", "en": "Overdue"},
    "critical": {"zh-CN": "严重", "en": "Critical"},
    "case": {"zh-CN": "案件", "en": "Case"},
    "customer": {"zh-CN": "客户", "en": "Customer"},
    "severity": {"zh-CN": "严重程度", "en": "Severity"},
    "state": {"zh-CN": "状态", "en": "State"},
    "assignee": {"zh-CN": "负责人", "en": "Assignee"},
    "opened": {"zh-CN": "立案时间", "en": "Opened"},
    "due": {"zh-CN": "截止时间", "en": "Due"},
    "actions": {"zh-CN": "操作", "en": "Actions"},
    "acknowledge": {"zh-CN": "确认接收", "en": "Acknowledge"},
    "investigate": {"zh-CN": "开始调查", "en": "Start investigating"},
    "note": {"zh-CN": "添加备注", "en": "Add note"},
    "close": {"zh-CN": "结案", "en": "Close"},
    "escalate": {"zh-CN": "上报合规", "en": "Escalate to compliance"},
    "propose_report": {"zh-CN": "提议报送可疑交易报告", "en": "Propose STR"},
    "approve_report": {"zh-CN": "批准报送（双人复核）", "en": "Approve STR (four eyes)"},
    "reason": {"zh-CN": "理由", "en": "Reason"},
    "assessment": {"zh-CN": "评估意见", "en": "Assessment"},
    "false_positive": {"zh-CN": "误报", "en": "False positive"},
    "not_suspicious": {"zh-CN": "不可疑", "en": "Not suspicious"},
    "reasons": {"zh-CN": "预警原因", "en": "Why this was flagged"},
    "factors": {"zh-CN": "模型主要因素", "en": "Model's top factors"},
    "transactions": {"zh-CN": "相关交易", "en": "Transactions involved"},
    "chart": {"zh-CN": "客户近期交易金额（红点为预警交易）", "en": "Recent amounts (red: flagged)"},
    "audit": {"zh-CN": "审计记录", "en": "Audit trail"},
    "notes": {"zh-CN": "备注", "en": "Notes"},
    "time": {"zh-CN": "时间", "en": "Time"},
    "actor": {"zh-CN": "操作人", "en": "Actor"},
    "action": {"zh-CN": "动作", "en": "Action"},
    "amount": {"zh-CN": "金额", "en": "Amount"},
    "direction": {"zh-CN": "方向", "en": "Direction"},
    "channel": {"zh-CN": "渠道", "en": "Channel"},
    "escalated_cases": {"zh-CN": "待决定的上报案件", "en": "Escalated cases awaiting decision"},
    "approvals": {"zh-CN": "待双人复核批准", "en": "Four-eyes approvals pending"},
    "overdue_by_manager": {"zh-CN": "各客户经理逾期案件", "en": "Overdue cases by manager"},
    "performance": {"zh-CN": "客户经理考核", "en": "Manager performance"},
    "period": {"zh-CN": "期间", "en": "Period"},
    "show": {"zh-CN": "查询", "en": "Show"},
    "received": {"zh-CN": "收到预警", "en": "Alerts received"},
    "median_ack": {"zh-CN": "确认时长中位数", "en": "Median time to acknowledge"},
    "verify_audit": {"zh-CN": "校验审计链", "en": "Verify audit chain"},
    "reports": {"zh-CN": "报告导出", "en": "Report exports"},
    "report_kind": {"zh-CN": "报告类型", "en": "Report"},
    "large_value": {"zh-CN": "大额交易报告", "en": "Large-value"},
    "suspicious": {"zh-CN": "可疑交易报告", "en": "Suspicious (STR)"},
    "pending": {"zh-CN": "待导出", "en": "Pending"},
    "exported": {"zh-CN": "已导出", "en": "Exported"},
    "submitted": {"zh-CN": "已报送", "en": "Submitted"},
    "corrected": {"zh-CN": "已纠错", "en": "Corrected"},
    "format": {"zh-CN": "格式", "en": "Format"},
    "pboc_xml": {"zh-CN": "人民银行 XML", "en": "PBoC XML"},
    "message_type": {"zh-CN": "报文类型", "en": "Message type"},
    "normal_message": {"zh-CN": "正常报送", "en": "Normal"},
    "resend_message": {"zh-CN": "重发", "en": "Resend"},
    "correction_message": {"zh-CN": "纠错", "en": "Correction"},
    "export": {"zh-CN": "导出", "en": "Export"},
    "export_hint": {
        "zh-CN": "XML 报文导出后记录标记为已导出（可疑交易报告为 zip，每案一份报文）；"
        "CSV/Excel 仅供复核，不改变状态。导出均记入审计日志。",
        "en": "XML filings mark their records exported (STRs come as a zip, one message "
        "per case); CSV and Excel are review files and mark nothing. Every export is audited.",
    },
    "users": {"zh-CN": "用户管理", "en": "Users"},
    "role": {"zh-CN": "角色", "en": "Role"},
    "display_name": {"zh-CN": "显示名称", "en": "Display name"},
    "last_login": {"zh-CN": "最近登录", "en": "Last sign-in"},
    "active": {"zh-CN": "启用", "en": "active"},
    "disabled": {"zh-CN": "已停用", "en": "disabled"},
    "locked": {"zh-CN": "已锁定", "en": "locked"},
    "new_password": {"zh-CN": "新密码（至少12位）", "en": "New password (12+ characters)"},
    "reset_password": {"zh-CN": "重置密码", "en": "Reset password"},
    "disable_user": {"zh-CN": "停用", "en": "Disable"},
    "add_user": {"zh-CN": "新增用户", "en": "Add user"},
    "users_hint": {
        "zh-CN": "客户经理和主管以其经理编号登录；重置密码或停用会注销该用户的所有会话。",
        "en": "Managers and supervisors sign in with their manager id; a reset or a disable "
        "signs the user out everywhere.",
    },
    "nothing": {"zh-CN": "暂无", "en": "Nothing here"},
    "proposed_by": {"zh-CN": "提议人", "en": "Proposed by"},
    "error": {"zh-CN": "出错了", "en": "Something is wrong"},
    "login_failed": {"zh-CN": "用户名或密码错误", "en": "Wrong user id or password"},
    "throttled": {
        "zh-CN": "登录失败次数过多，请稍后再试",
        "en": "Too many failed logins; try later",
    },
    "new_state": {"zh-CN": "新建", "en": "new"},
    "acknowledged_state": {"zh-CN": "已确认", "en": "acknowledged"},
    "investigating_state": {"zh-CN": "调查中", "en": "investigating"},
    "escalated_state": {"zh-CN": "已上报合规", "en": "escalated"},
    "reported_state": {"zh-CN": "已报送", "en": "reported"},
    "closed_state": {"zh-CN": "已结案", "en": "closed"},
    "low_sev": {"zh-CN": "低", "en": "low"},
    "medium_sev": {"zh-CN": "中", "en": "medium"},
    "high_sev": {"zh-CN": "高", "en": "high"},
    "critical_sev": {"zh-CN": "严重", "en": "critical"},
}


def chosen_language(requested: str | None) -> str:
    """A supported language: ``requested`` if known, else the default (zh-CN)."""
    return requested if requested in LANGUAGES else DEFAULT_LANGUAGE


def translator(language: str) -> dict[str, str]:
    """Every label in ``language`` (missing ones fall back to the key)."""
    return {key: texts.get(language, key) for key, texts in LABELS.items()}


def local_time(moment: datetime | None, zone: tzinfo) -> str:
    """``moment`` in the bank's time zone, to the minute, with the offset."""
    if moment is None:
        return "—"
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %z")


def money(amount: Decimal | str, currency: str) -> str:
    """An amount with thousands separators, two decimals and its currency code."""
    return f"{Decimal(amount):,.2f} {currency}"


__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "chosen_language", "local_time", "money", "translator"]
